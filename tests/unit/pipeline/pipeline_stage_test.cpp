// PipelineStage over real Gloo, ranks as threads: P stages with M micro-batches and
// either schedule compute the single-process training run, and fuse back into it.
#include "loom/pipeline/pipeline_stage.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <mutex>

#include "loom/comm/context.h"
#include "loom/core/dist_env.h"
#include "loom/core/error.h"
#include "loom/models/registry.h"
#include "loom/pipeline/layer_costs.h"
#include "loom/pipeline/stage_split.h"
#include "loom/trace/tracer.h"
#include "unit/dp/dp_testing.h"

namespace loom::pipeline {
namespace {

using dp::testing::Batches;
using dp::testing::make_batches;
using dp::testing::run_ranks;
using dp::testing::run_ranks_collect;

constexpr int kSteps = 3;
constexpr int64_t kBatch = 24;

torch::nn::Sequential make_mlp() {
  models::ModelOptions o;
  o.sample_shape = {1, 6, 6};
  o.num_classes = 5;
  o.seed = 11;
  o.width = 16;
  o.depth = 5;
  return models::make_model("deep-mlp", o);  // flatten + 5 linear + 4 relu = 10 layers
}

std::unique_ptr<torch::optim::Optimizer> sgd(const std::vector<at::Tensor>& params) {
  return std::make_unique<torch::optim::SGD>(params, torch::optim::SGDOptions(0.1).momentum(0.9));
}

std::vector<at::Tensor> single_run(const Batches& b) {
  auto model = make_mlp();
  auto opt = sgd(model->parameters());
  for (int t = 0; t < kSteps; ++t) {
    opt->zero_grad();
    models::training_loss(model->forward(b.x[t]), b.y[t]).backward();
    opt->step();
  }
  return dp::testing::snapshot(*model);
}

struct PipelineRun {
  std::vector<at::Tensor> fused;  // rank 0's whole model at the end
  std::vector<double> losses;     // rank 0's per-step loss
  std::vector<StageStepStats> stats;
};

PipelineRun pipeline_run(const Batches& b, int P, int M, ScheduleKind kind, std::vector<int64_t> split = {}) {
  PipelineRun out;
  out.stats.resize(P);
  std::mutex mu;
  if (split.empty()) split = uniform_split(static_cast<int64_t>(make_mlp()->size()), P);
  run_ranks(P, [&](comm::Context& ctx) {
    auto model = make_mlp();
    const auto offsets = stage_offsets(split);
    const int s = ctx.rank();
    auto layers = stage_layers(model, offsets[s], offsets[s + 1]);
    PipelineStageOptions o;
    o.schedule = kind;
    PipelineStage stage(layers, ctx.world(), o);
    auto opt = sgd(layers->parameters());
    std::vector<double> losses;
    for (int t = 0; t < kSteps; ++t) {
      opt->zero_grad();
      losses.push_back(stage.run(kBatch, s == 0 ? b.x[t] : at::Tensor(), s == P - 1 ? b.y[t] : at::Tensor(), M));
      opt->step();
    }
    gather_stages(model, split, ctx.world());
    std::lock_guard<std::mutex> lock(mu);
    out.stats[s] = stage.last_step();
    if (s == 0) {
      out.fused = dp::testing::snapshot(*model);
      out.losses = losses;
    }
  });
  return out;
}

class PipelineEquivalence : public ::testing::TestWithParam<std::tuple<int, int, ScheduleKind>> {};

TEST_P(PipelineEquivalence, EqualsTheSingleProcessRun) {
  const auto [P, M, kind] = GetParam();
  const Batches b = make_batches(kSteps, kBatch, {1, 6, 6}, 5);
  const auto reference = single_run(b);
  const auto run = pipeline_run(b, P, M, kind);
  EXPECT_LT(dp::testing::max_abs_diff(reference, run.fused), 1e-5);
  // Rank 0 reports the batch's mean loss (before the step).
  auto model = make_mlp();
  EXPECT_NEAR(run.losses[0], models::training_loss(model->forward(b.x[0]), b.y[0]).item<double>(), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(StagesMicroBatchesSchedules, PipelineEquivalence,
                         ::testing::Combine(::testing::Values(1, 2, 3), ::testing::Values(1, 3, 4),
                                            ::testing::Values(ScheduleKind::gpipe, ScheduleKind::one_f_one_b)));

TEST(PipelineStage, UnevenSplitAndAStageWithoutParameters) {
  // Stage 0 is the flatten alone: no parameters, its output needs no gradient.
  const Batches b = make_batches(kSteps, kBatch, {1, 6, 6}, 5);
  const auto run = pipeline_run(b, 3, 4, ScheduleKind::one_f_one_b, {1, 6, 3});
  EXPECT_LT(dp::testing::max_abs_diff(single_run(b), run.fused), 1e-5);
}

TEST(PipelineStage, OneFOneBStashesAtMostTheStagesAheadGpipeStashesAll) {
  const Batches b = make_batches(kSteps, kBatch, {1, 6, 6}, 5);
  const int P = 2, M = 8;
  const auto gpipe = pipeline_run(b, P, M, ScheduleKind::gpipe);
  const auto ofob = pipeline_run(b, P, M, ScheduleKind::one_f_one_b);
  for (int s = 0; s < P; ++s) {
    EXPECT_EQ(gpipe.stats[s].peak_in_flight, M);
    EXPECT_EQ(ofob.stats[s].peak_in_flight, P - s);
    EXPECT_GT(gpipe.stats[s].peak_stash_bytes, 0);
    // Equal micro-batches (24 / 8): stash grows with what is held.
    EXPECT_EQ(gpipe.stats[s].peak_stash_bytes * (P - s), ofob.stats[s].peak_stash_bytes * M);
  }
}

TEST(PipelineStage, ADeadNeighbourEndsTheStepWithANamedError) {
  const Batches b = make_batches(1, kBatch, {1, 6, 6}, 5);
  const auto errors = run_ranks_collect(
      2,
      [&](comm::Context& ctx) {
        auto model = make_mlp();
        if (ctx.rank() == 1) LOOM_THROW(ModelError, "rank 1 gives up");  // never answers
        PipelineStage stage(stage_layers(model, 0, 5), ctx.world(), {});
        stage.run(kBatch, b.x[0], at::Tensor(), 2);
      },
      std::chrono::seconds(3));
  ASSERT_TRUE(errors[0]);
  try {
    std::rethrow_exception(errors[0]);
  } catch (const CommError& e) {
    EXPECT_NE(std::string(e.what()).find("rank 1"), std::string::npos) << e.what();
  }
}

TEST(PipelineStage, TracesForwardsBackwardsMessagesAndWaits) {
  const Batches b = make_batches(1, kBatch, {1, 6, 6}, 5);
  std::vector<std::string> bodies(2);
  run_ranks(2, [&](comm::Context& ctx) {
    auto model = make_mlp();
    const int s = ctx.rank();
    trace::Tracer tracer(s, true);
    PipelineStageOptions o;
    o.tracer = &tracer;
    PipelineStage stage(stage_layers(model, s == 0 ? 0 : 5, s == 0 ? 5 : 10), ctx.world(), o);
    stage.run(kBatch, s == 0 ? b.x[0] : at::Tensor(), s == 1 ? b.y[0] : at::Tensor(), 2);
    bodies[s] = tracer.events_json();
  });
  for (const char* name : {"forward 0", "backward 1", "send act 1", "recv grad 0"}) {
    EXPECT_NE(bodies[0].find(name), std::string::npos) << name;
  }
  for (const char* name : {"forward 1", "backward 0", "recv act 0", "send grad 1", "wait act 0"}) {
    EXPECT_NE(bodies[1].find(name), std::string::npos) << name;
  }
}

TEST(LayerCosts, CountParametersAndTimeLayersWithoutChangingTheModel) {
  auto model = make_mlp();
  const auto params = parameter_costs(model);
  ASSERT_EQ(params.size(), model->size());
  EXPECT_EQ(params[0], 0);             // flatten
  EXPECT_EQ(params[1], 36 * 16 + 16);  // linear(36, 16)
  const auto before = dp::testing::snapshot(*model);
  const auto times = time_costs(model, torch::ones({8, 1, 6, 6}), 3);
  ASSERT_EQ(times.size(), model->size());
  for (double t : times) EXPECT_GT(t, 0);
  EXPECT_EQ(dp::testing::max_abs_diff(before, dp::testing::snapshot(*model)), 0);
  for (const auto& p : model->parameters()) EXPECT_FALSE(p.grad().defined());
}

// The planner's profile (issue 18): the same timed runs, in parts. Forward and backward
// of every parametrised layer are measured apart, each layer's output bytes are those
// of the tensor it hands on, and its parameter bytes are exact; the model is unchanged.
TEST(LayerCosts, ProfileSplitsForwardBackwardAndCountsBytes) {
  auto model = make_mlp();
  const auto before = dp::testing::snapshot(*model);
  const auto profile = profile_layers(model, torch::ones({8, 1, 6, 6}), 3);
  ASSERT_EQ(profile.size(), model->size());
  EXPECT_EQ(profile[0].param_count, 0);  // flatten
  EXPECT_EQ(profile[0].output_bytes, 8 * 36 * 4);
  EXPECT_EQ(profile[1].param_count, 36 * 16 + 16);
  EXPECT_EQ(profile[1].param_bytes, (36 * 16 + 16) * 4);
  EXPECT_EQ(profile[1].output_bytes, 8 * 16 * 4);
  for (size_t i = 0; i < profile.size(); ++i) {
    EXPECT_GT(profile[i].forward_s, 0) << "layer " << i;
    if (profile[i].param_count > 0) {
      EXPECT_GT(profile[i].backward_s, 0) << "layer " << i;
    }
  }
  EXPECT_EQ(dp::testing::max_abs_diff(before, dp::testing::snapshot(*model)), 0);
  for (const auto& p : model->parameters()) EXPECT_FALSE(p.grad().defined());
}

TEST(LayerCosts, TheTimeSplitIsReproducible) {
  // One layer far heavier than all the others together (a 1024x1024 product on 128
  // rows against a few 16-wide ones): the only split whose slowest stage is that layer
  // alone puts it alone, whatever the timing noise of a busy machine.
  torch::nn::Sequential m(torch::nn::Linear(1024, 1024), torch::nn::ReLU(), torch::nn::Linear(1024, 16),
                          torch::nn::ReLU(), torch::nn::Linear(16, 16), torch::nn::Linear(16, 10));
  set_blas_threads(1);  // as the trainer does: one thread, no BLAS pool of its own
  for (int run = 0; run < 3; ++run) {
    const auto costs = time_costs(m, torch::ones({128, 1024}));
    EXPECT_EQ(balanced_split(costs, 2), (std::vector<int64_t>{1, 5})) << "costs " << ::testing::PrintToString(costs);
  }
}

}  // namespace
}  // namespace loom::pipeline
