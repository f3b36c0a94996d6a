// The tests' one parameter comparison (support/tensor_compare.h) must see what the naive
// std::max(worst, (a - b).abs().max()) form cannot: NaN, infinity, a missing key.
#include "support/tensor_compare.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>

#include "loom/train/model_io.h"
#include "support/temp_path.h"

namespace {

using loom::test::kInfiniteDifference;
using loom::test::max_abs;
using loom::test::max_abs_diff;
using loom::test::NamedTensors;

const double kNaN = std::nan("");
const double kInf = std::numeric_limits<double>::infinity();

at::Tensor with(double value, int64_t at_index = 2) {
  auto t = torch::arange(5, torch::kFloat);
  t[at_index] = value;
  return t;
}

TEST(TensorCompare, TheNaiveFormIsBlindToNaN) {
  // Why the helper exists: this is what the tests did before.
  const double naive = std::max(0.0, (with(kNaN) - with(2)).abs().max().item<double>());
  EXPECT_EQ(naive, 0.0);
  EXPECT_EQ(max_abs_diff(with(kNaN), with(2)), kInfiniteDifference);
}

TEST(TensorCompare, EqualFiniteTensorsDifferByZeroAndOthersByTheirLargestGap) {
  EXPECT_EQ(max_abs_diff(with(2), with(2)), 0.0);
  EXPECT_DOUBLE_EQ(max_abs_diff(with(2), with(2.5)), 0.5);
  EXPECT_DOUBLE_EQ(max_abs_diff(with(2).to(torch::kDouble), with(-1)), 3.0);  // dtypes may differ
  EXPECT_EQ(max_abs_diff(torch::empty({0}), torch::empty({0})), 0.0);
}

TEST(TensorCompare, NaNOnEitherSideOrBothIsAnInfiniteDifference) {
  EXPECT_EQ(max_abs_diff(with(kNaN), with(2)), kInfiniteDifference);
  EXPECT_EQ(max_abs_diff(with(2), with(kNaN)), kInfiniteDifference);
  EXPECT_EQ(max_abs_diff(with(kNaN), with(kNaN)), kInfiniteDifference);
  EXPECT_EQ(max_abs_diff(torch::full({3}, kNaN), torch::full({3}, kNaN)), kInfiniteDifference);
}

TEST(TensorCompare, InfinityIsAnInfiniteDifferenceEvenAgainstItself) {
  EXPECT_EQ(max_abs_diff(with(kInf), with(2)), kInfiniteDifference);
  EXPECT_EQ(max_abs_diff(with(2), with(-kInf)), kInfiniteDifference);
  EXPECT_EQ(max_abs_diff(with(kInf), with(kInf)), kInfiniteDifference);
}

TEST(TensorCompare, ShapesAndCountsThatDifferAreInfinite) {
  EXPECT_EQ(max_abs_diff(torch::zeros({2, 3}), torch::zeros({3, 2})), kInfiniteDifference);
  EXPECT_EQ(max_abs_diff(torch::zeros({6}), at::Tensor()), kInfiniteDifference);
  const std::vector<at::Tensor> two{with(2), with(2)}, one{with(2)};
  EXPECT_EQ(max_abs_diff(two, two), 0.0);
  EXPECT_EQ(max_abs_diff(two, one), kInfiniteDifference);
  EXPECT_EQ(max_abs_diff(std::vector<at::Tensor>{with(2), with(kNaN)}, two), kInfiniteDifference);
}

TEST(TensorCompare, NamedListsCompareByNameAndAMissingOrExtraKeyIsInfinite) {
  const NamedTensors a{{"w", with(2)}, {"b", with(3)}};
  const NamedTensors reordered{{"b", with(3)}, {"w", with(2)}};
  EXPECT_EQ(max_abs_diff(a, reordered), 0.0);
  EXPECT_EQ(max_abs_diff(a, NamedTensors{{"w", with(2)}}), kInfiniteDifference);                        // missing
  EXPECT_EQ(max_abs_diff(NamedTensors{{"w", with(2)}}, a), kInfiniteDifference);                        // extra
  EXPECT_EQ(max_abs_diff(a, NamedTensors{{"w", with(2)}, {"c", with(3)}}), kInfiniteDifference);        // renamed
  EXPECT_EQ(max_abs_diff(a, NamedTensors{{"w", with(2)}, {"w", with(2)}}), kInfiniteDifference);        // twice
  EXPECT_EQ(max_abs_diff(a, NamedTensors{{"w", with(2)}, {"b", with(kNaN, 4)}}), kInfiniteDifference);  // NaN
  EXPECT_DOUBLE_EQ(max_abs_diff(a, NamedTensors{{"w", with(2)}, {"b", with(3.25)}}), 0.25);
}

TEST(TensorCompare, ModelFilesWithANaNDoNotEqualTheirReference) {
  // What the integration tests compare: files written by --save.
  const auto dir = std::filesystem::path(loom::test::temp_path("tensor_compare"));
  std::filesystem::create_directories(dir);
  loom::train::save_model_file((dir / "ref.pt").string(), {{"w", with(2)}, {"b", with(3)}});
  loom::train::save_model_file((dir / "nan.pt").string(), {{"w", with(2)}, {"b", with(kNaN)}});
  const auto ref = loom::train::load_model_file((dir / "ref.pt").string());
  const auto bad = loom::train::load_model_file((dir / "nan.pt").string());
  EXPECT_EQ(max_abs_diff(ref, ref), 0.0);
  EXPECT_EQ(max_abs_diff(ref, bad), kInfiniteDifference);
  std::filesystem::remove_all(dir);
}

TEST(TensorCompare, MaxAbsSeesNaNAndInfinity) {
  EXPECT_DOUBLE_EQ(max_abs({with(-7), with(2)}), 7.0);
  EXPECT_EQ(max_abs({with(2), with(kNaN)}), kInfiniteDifference);
  EXPECT_EQ(max_abs({with(-kInf)}), kInfiniteDifference);
}

}  // namespace
