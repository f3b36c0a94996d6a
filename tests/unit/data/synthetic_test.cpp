#include "loom/data/dataset.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <limits>
#include <vector>

#include "loom/core/error.h"

namespace loom::data {
namespace {

SyntheticOptions small_options(uint64_t seed = 0) {
  SyntheticOptions o;
  o.num_samples = 2000;
  o.num_test_samples = 500;
  o.seed = seed;
  return o;
}

bool same(const Dataset& a, const Dataset& b) {
  return at::equal(a.inputs, b.inputs) && at::equal(a.targets, b.targets);
}

TEST(Synthetic, ShapesAndTypes) {
  const Dataset train = make_synthetic(small_options(), Split::train);
  const Dataset test = make_synthetic(small_options(), Split::test);
  EXPECT_EQ(train.name, "synthetic");
  EXPECT_EQ(train.size(), 2000);
  EXPECT_EQ(test.size(), 500);
  EXPECT_EQ(train.num_classes, 10);
  EXPECT_EQ(train.sample_shape, (std::vector<int64_t>{1, 28, 28}));
  ASSERT_EQ(train.inputs.scalar_type(), at::kFloat);
  ASSERT_EQ(train.targets.scalar_type(), at::kLong);
  EXPECT_EQ(train.inputs.sizes().vec(), (std::vector<int64_t>{2000, 1, 28, 28}));
  EXPECT_TRUE(train.inputs.is_contiguous());
  EXPECT_GE(train.targets.min().item<int64_t>(), 0);
  EXPECT_LT(train.targets.max().item<int64_t>(), 10);
  // Every class appears, roughly equally often.
  const at::Tensor counts = at::bincount(train.targets, {}, 10);
  EXPECT_GT(counts.min().item<int64_t>(), 120);
  // Inputs are standardized.
  EXPECT_NEAR(train.inputs.mean().item<double>(), 0.0, 0.05);
  EXPECT_NEAR(train.inputs.std().item<double>(), 1.0, 0.05);
}

TEST(Synthetic, DefaultsDescribeTheDocumentedSet) {
  const Dataset d = make_synthetic(SyntheticOptions{});
  EXPECT_EQ(d.size(), 8192);
  EXPECT_EQ(d.inputs.sizes().vec(), (std::vector<int64_t>{8192, 1, 28, 28}));
  EXPECT_EQ(make_synthetic(SyntheticOptions{}, Split::test).size(), 2048);
}

TEST(Synthetic, IsDeterministicPerSeed) {
  EXPECT_TRUE(same(make_synthetic(small_options(3)), make_synthetic(small_options(3))));
  EXPECT_TRUE(same(make_synthetic(small_options(3), Split::test), make_synthetic(small_options(3), Split::test)));
}

TEST(Synthetic, IgnoresTheGlobalTorchGenerator) {
  at::manual_seed(1);
  const Dataset a = make_synthetic(small_options(4));
  at::manual_seed(2);
  (void)at::randn({1000});
  const Dataset b = make_synthetic(small_options(4));
  EXPECT_TRUE(same(a, b));
}

TEST(Synthetic, DiffersBetweenSeedsAndSplits) {
  const Dataset a = make_synthetic(small_options(1));
  EXPECT_FALSE(at::equal(a.inputs, make_synthetic(small_options(2)).inputs));
  EXPECT_FALSE(at::equal(a.targets, make_synthetic(small_options(2)).targets));
  SyntheticOptions same_size = small_options(1);
  same_size.num_test_samples = same_size.num_samples;
  const Dataset test = make_synthetic(same_size, Split::test);
  EXPECT_FALSE(at::equal(a.inputs, test.inputs));
  EXPECT_FALSE(at::equal(a.targets, test.targets));
}

// Class means estimated on the train split classify the test split: the splits share one
// distribution (same prototypes) and the task is learnable.
double nearest_mean_accuracy(const SyntheticOptions& options) {
  const Dataset train = make_synthetic(options, Split::train);
  const Dataset test = make_synthetic(options, Split::test);
  const at::Tensor x = train.inputs.flatten(1);
  const at::Tensor onehot = at::one_hot(train.targets, train.num_classes).to(at::kFloat);
  const at::Tensor means = onehot.t().mm(x) / onehot.sum(0).unsqueeze(1);
  const at::Tensor predicted = at::cdist(test.inputs.flatten(1), means).argmin(1);
  return predicted.eq(test.targets).to(at::kDouble).mean().item<double>();
}

TEST(Synthetic, TrainAndTestShareOneLearnableDistribution) {
  SyntheticOptions easy = small_options(5);
  easy.noise = 2.0f;
  EXPECT_GT(nearest_mean_accuracy(easy), 0.99);
  // With a different seed's prototypes, the same classifier is at chance level.
  SyntheticOptions other_seed = easy;
  other_seed.seed = 6;
  const Dataset train = make_synthetic(easy, Split::train);
  const Dataset other = make_synthetic(other_seed, Split::test);
  const at::Tensor onehot = at::one_hot(train.targets, 10).to(at::kFloat);
  const at::Tensor means = onehot.t().mm(train.inputs.flatten(1)) / onehot.sum(0).unsqueeze(1);
  const double chance =
      at::cdist(other.inputs.flatten(1), means).argmin(1).eq(other.targets).to(at::kDouble).mean().item<double>();
  EXPECT_LT(chance, 0.25);
}

// The documented difficulty of the defaults: learnable, but not saturated.
TEST(Synthetic, DefaultDifficulty) {
  const double accuracy = nearest_mean_accuracy(SyntheticOptions{});
  EXPECT_GT(accuracy, 0.94);
  EXPECT_LT(accuracy, 0.995);
}

TEST(Synthetic, NoiseMakesItHarder) {
  SyntheticOptions hard = small_options(5);
  hard.noise = 40.0f;
  EXPECT_LT(nearest_mean_accuracy(hard), 0.9);
}

TEST(Synthetic, OtherShapes) {
  SyntheticOptions o;
  o.num_samples = 10;
  o.sample_shape = {7};
  o.num_classes = 3;
  const Dataset d = make_synthetic(o);
  EXPECT_EQ(d.inputs.sizes().vec(), (std::vector<int64_t>{10, 7}));
  EXPECT_EQ(d.num_classes, 3);
  EXPECT_LT(d.targets.max().item<int64_t>(), 3);
}

TEST(Synthetic, RejectsBadOptions) {
  auto with = [](auto change) {
    SyntheticOptions o;
    change(o);
    return o;
  };
  EXPECT_THROW(make_synthetic(with([](auto& o) { o.num_samples = 0; })), ConfigError);
  EXPECT_THROW(make_synthetic(with([](auto& o) { o.num_test_samples = -1; }), Split::test), ConfigError);
  EXPECT_THROW(make_synthetic(with([](auto& o) { o.num_classes = 1; })), ConfigError);
  EXPECT_THROW(make_synthetic(with([](auto& o) { o.sample_shape = {}; })), ConfigError);
  EXPECT_THROW(make_synthetic(with([](auto& o) { o.sample_shape = {1, 0, 28}; })), ConfigError);
  EXPECT_THROW(make_synthetic(with([](auto& o) { o.noise = -1; })), ConfigError);
  EXPECT_THROW(make_synthetic(with([](auto& o) { o.noise = std::numeric_limits<float>::quiet_NaN(); })), ConfigError);
}

}  // namespace
}  // namespace loom::data
