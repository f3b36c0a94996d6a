// The planner's model profile: every layer at every batch, bytes exact, times positive
// where the layer computes, a JSON round trip, and the batch sizes a plan can run.
#include "loom/plan/profile.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "loom/core/error.h"
#include "loom/models/registry.h"

namespace {

using namespace loom::plan;

torch::nn::Sequential small_mlp() {
  loom::models::ModelOptions o;
  o.sample_shape = {1, 6, 6};
  o.num_classes = 5;
  o.width = 16;
  o.depth = 3;
  return loom::models::make_model("deep-mlp", o);  // flatten, linear, relu, linear, relu, linear
}

TEST(Profile, EveryLayerAtEveryBatchWithExactBytes) {
  auto model = small_mlp();
  ProfileOptions o;
  o.batches = {8, 2};
  o.repeats = 3;
  const ModelProfile p = profile_model(model, "deep-mlp", {1, 6, 6}, o);
  ASSERT_EQ(p.layers.size(), model->size());
  EXPECT_EQ(p.layers[0].param_count, 0);
  EXPECT_EQ(p.layers[1].param_count, 36 * 16 + 16);
  EXPECT_EQ(p.layers[1].param_bytes, (36 * 16 + 16) * 4);
  EXPECT_EQ(p.param_count(), (36 * 16 + 16) + (16 * 16 + 16) + (16 * 5 + 5));
  for (const auto& layer : p.layers) {
    ASSERT_EQ(layer.times.size(), 2u) << layer.name;
    EXPECT_EQ(layer.times[0].batch, 8);
    EXPECT_EQ(layer.times[1].batch, 2);
    EXPECT_GT(layer.times[0].forward_s, 0) << layer.name;
    if (layer.param_count > 0) {
      EXPECT_GT(layer.times[0].backward_s, 0) << layer.name;
    }
  }
  EXPECT_EQ(p.layers[0].times[0].output_bytes, 8 * 36 * 4);  // flatten: 8 rows of 36
  EXPECT_EQ(p.layers[5].times[1].output_bytes, 2 * 5 * 4);   // logits: 2 rows of 5
  EXPECT_GT(p.step_at(8), 0);
  EXPECT_EQ(p.param_tensors, 6);  // three linear layers: weight and bias each
}

TEST(Profile, JsonRoundTrip) {
  auto model = small_mlp();
  ProfileOptions o;
  o.batches = {4};
  o.repeats = 1;
  const ModelProfile p = profile_model(model, "deep-mlp", {1, 6, 6}, o);
  const ModelProfile q = ModelProfile::from_json(p.to_json(), "test");
  EXPECT_EQ(q.to_json(), p.to_json());
  EXPECT_EQ(q.step_at(4), p.step_at(4));
  EXPECT_THROW(ModelProfile::from_json("{\"model\": 1}", "bad.json"), loom::DataError);
  EXPECT_THROW(ModelProfile::from_json("not json", "bad.json"), loom::DataError);
}

TEST(Profile, BatchesThatMatter) {
  EXPECT_EQ(batches_that_matter(64, 4), (std::vector<int64_t>{64, 32, 22, 16, 8, 4, 2, 1}));
  EXPECT_EQ(batches_that_matter(1, 3), (std::vector<int64_t>{1}));
  EXPECT_THROW(batches_that_matter(0, 2), loom::ConfigError);
}

}  // namespace
