// ZeroRedundancyOptimizer (ZeRO stages 1 and 2) against a single-process run on the same
// global batches, with SGD + momentum and with Adam, 2 and 3 ranks, equal and uneven
// shards; each rank holds optimizer state for its range only, and with stage 2 only its
// range of the gradients. Ranks are threads over a real
// TCPStore and Gloo group (dp_testing.h), so the all-gather runs on shared memory.
#include "loom/dp/zero_optimizer.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <mutex>

#include "loom/comm/group.h"
#include "loom/core/error.h"
#include "loom/dp/distributed_data_parallel.h"
#include "loom/models/registry.h"
#include "unit/dp/dp_testing.h"

namespace {

using loom::comm::Context;
using loom::dp::DistributedDataParallel;
using loom::dp::ZeroOptions;
using loom::dp::ZeroRedundancyOptimizer;
namespace t = loom::dp::testing;

constexpr int kSteps = 20;
const std::vector<int64_t>& kSample = t::kMlpSample;
constexpr int64_t kClasses = t::kMlpClasses;
using t::loss_of;
using t::mlp;

const t::Init init;

loom::optim::OptimizerOptions sgd_momentum() {
  loom::optim::OptimizerOptions o;
  o.lr = 0.1;
  o.momentum = 0.9;
  o.weight_decay = 1e-3;
  return o;
}

loom::optim::OptimizerOptions adam() {
  loom::optim::OptimizerOptions o;
  o.kind = loom::optim::OptimizerKind::adam;
  o.lr = 0.01;
  o.weight_decay = 1e-3;
  return o;
}

std::vector<at::Tensor> reference_run(const t::Batches& data, const loom::optim::OptimizerOptions& o) {
  auto model = mlp();
  auto opt = loom::optim::make_optimizer(model->parameters(), o);
  for (int s = 0; s < kSteps; ++s) {
    opt->zero_grad();
    loss_of(model->forward(data.x[s]), data.y[s]).backward();
    opt->step();
  }
  return t::snapshot(*model);
}

struct RankResult {
  std::vector<at::Tensor> params;
  int64_t state_bytes = 0;
  int64_t owned = 0;
  int64_t gradient_bytes = 0;  // DistributedDataParallel::gradient_bytes()
  bool param_grads_freed = true;
};

// Stage 2 with three kinds of bucket on the test MLP (16 -> 256 -> 128 -> 5): bucket 0
// holds [2.bias 2.weight 1.bias], bucket 1 is 1.weight alone (reduced in its own
// gradient), bucket 2 holds [0.bias 0.weight]; with 3 ranks the ranges straddle them.
struct RunOptions {
  int stage = 1;
  loom::dp::DdpOptions ddp;
  int micro_batches = 1;  // > 1: the first ones under no_sync, accumulated
  RunOptions() {
    ddp.bucket_cap_mb = 0.05;
    ddp.first_bucket_mb = 0.01;
  }
};

// Every rank's final parameters and optimizer state. Rank r > 0 starts from another
// init, which DistributedDataParallel's broadcast fixes.
std::vector<RankResult> zero_run(const std::vector<int64_t>& batch_counts, const std::vector<double>& weights,
                                 const t::Batches& data, const loom::optim::OptimizerOptions& o,
                                 const RunOptions& run = {}) {
  const int world = static_cast<int>(batch_counts.size());
  std::vector<RankResult> out(world);
  std::mutex mu;
  t::run_ranks(world, [&](Context& ctx) {
    const int r = ctx.rank();
    const int64_t off = t::offsets_of(batch_counts)[r], n = batch_counts[r], total = t::sum_of(batch_counts);
    auto model = mlp(1 + r);
    DistributedDataParallel ddp(model, ctx.world(), run.ddp);
    ZeroOptions zo;
    zo.shard_weights = weights;
    ZeroRedundancyOptimizer opt(model->parameters(), ctx.world(), o, zo);
    if (run.stage == 2) opt.shard_gradients(ddp);
    bool freed = true;
    for (int s = 0; s < kSteps; ++s) {
      opt.zero_grad();
      // Micro-batch k of this rank's rows; the loss is scaled so the sum is the mean.
      const int m = run.micro_batches;
      for (int k = 0; k < m; ++k) {
        const int64_t lo = off + n * k / m, hi = off + n * (k + 1) / m;
        ddp.set_sync(k == m - 1);
        ddp.set_weight(double(n) / double(total));
        const auto loss = loss_of(model->forward(data.x[s].slice(0, lo, hi)), data.y[s].slice(0, lo, hi));
        (loss * (double(hi - lo) / double(n))).backward();
      }
      ddp.finish();
      for (const auto& p : model->parameters()) freed = freed && !p.grad().defined();
      opt.step();
    }
    std::lock_guard<std::mutex> lock(mu);
    out[r] = {t::snapshot(*model), opt.state_bytes(), opt.range_end() - opt.range_begin(), ddp.gradient_bytes(), freed};
  });
  return out;
}

int64_t param_count() {
  int64_t n = 0;
  for (const auto& p : mlp()->parameters()) n += p.numel();
  return n;
}

void expect_equivalent(const std::vector<int64_t>& batch_counts, const std::vector<double>& weights,
                       const loom::optim::OptimizerOptions& o, int64_t state_per_param, const RunOptions& run = {}) {
  const auto data = t::make_batches(kSteps, t::sum_of(batch_counts), kSample, kClasses);
  const auto ref = reference_run(data, o);
  const auto ranks = zero_run(batch_counts, weights, data, o, run);
  const int64_t total = param_count();
  int64_t owned = 0;
  for (size_t r = 0; r < ranks.size(); ++r) {
    EXPECT_LT(t::max_abs_diff(ranks[r].params, ref), 1e-5) << "rank " << r;
    EXPECT_EQ(t::max_abs_diff(ranks[r].params, ranks[0].params), 0.0) << "rank " << r << " differs from rank 0";
    // Optimizer state only for its own range: bytes per element times its count.
    EXPECT_EQ(ranks[r].state_bytes, ranks[r].owned * state_per_param) << "rank " << r;
    owned += ranks[r].owned;
    if (run.stage == 2) {
      // Gradients: its range, plus one pooled buffer for the multi-parameter buckets (the
      // largest: 0.bias and 0.weight, 16 * 256 + 256 elements); param.grad freed.
      EXPECT_EQ(ranks[r].gradient_bytes, (ranks[r].owned + 16 * 256 + 256) * 4) << "rank " << r;
      EXPECT_TRUE(ranks[r].param_grads_freed) << "rank " << r;
    } else {
      EXPECT_EQ(ranks[r].gradient_bytes, total * 4) << "rank " << r;
    }
  }
  EXPECT_EQ(owned, total);
}

TEST(ZeroRedundancyOptimizer, SgdMomentumTwoRanksEqualsSingleProcess) {
  expect_equivalent({6, 6}, {}, sgd_momentum(), 4);
}

TEST(ZeroRedundancyOptimizer, AdamThreeRanksEqualsSingleProcess) { expect_equivalent({4, 4, 4}, {}, adam(), 8); }

TEST(ZeroRedundancyOptimizer, AdamWTwoRanksEqualsSingleProcess) {
  auto o = adam();
  o.kind = loom::optim::OptimizerKind::adamw;
  o.weight_decay = 0.05;  // decoupled
  expect_equivalent({6, 6}, {}, o, 8);
}

TEST(ZeroRedundancyOptimizer, UnevenShardsAndBatchesEqualSingleProcess) {
  expect_equivalent({6, 3, 3}, {2, 1, 1}, adam(), 8);
  expect_equivalent({6, 3, 3}, {2, 1, 1}, sgd_momentum(), 4);
}

RunOptions stage2() {
  RunOptions run;
  run.stage = 2;
  return run;
}

TEST(ZeroRedundancyOptimizer, Stage2EqualsSingleProcessWithEachOptimizer) {
  expect_equivalent({6, 6}, {}, sgd_momentum(), 4, stage2());
  expect_equivalent({4, 4, 4}, {}, adam(), 8, stage2());
}

TEST(ZeroRedundancyOptimizer, Stage2UnevenShardsAndBatchesEqualSingleProcess) {
  expect_equivalent({6, 3, 3}, {2, 1, 1}, adam(), 8, stage2());
  expect_equivalent({2, 5, 5}, {1, 0, 3}, sgd_momentum(), 4, stage2());  // a rank that owns nothing
}

TEST(ZeroRedundancyOptimizer, Stage2AccumulatesUnderNoSync) {
  RunOptions run = stage2();
  run.micro_batches = 3;
  expect_equivalent({6, 6, 6}, {}, adam(), 8, run);
}

// With fp16 compression the hook reduces each bucket in full and a rank keeps its range:
// bitwise what stage 1 with the same compression computes.
TEST(ZeroRedundancyOptimizer, Stage2WithCompressionEqualsStage1) {
  const auto data = t::make_batches(kSteps, 12, kSample, kClasses);
  RunOptions one, two = stage2();
  one.ddp.compression = two.ddp.compression = loom::dp::Compression::fp16;
  const auto a = zero_run({6, 6}, {}, data, adam(), one);
  const auto b = zero_run({6, 6}, {}, data, adam(), two);
  for (size_t r = 0; r < a.size(); ++r) EXPECT_EQ(t::max_abs_diff(a[r].params, b[r].params), 0.0) << "rank " << r;
  EXPECT_GT(t::max_abs_diff(a[0].params, reference_run(data, adam())), 0.0) << "fp16 rounding is visible";
}

TEST(ZeroRedundancyOptimizer, Stage2ChecksItsInputs) {
  t::run_ranks(2, [&](Context& ctx) {
    auto model = mlp();
    DistributedDataParallel ddp(model, ctx.world());
    ZeroRedundancyOptimizer other(mlp()->parameters(), ctx.world(), adam());
    EXPECT_THROW(other.shard_gradients(ddp), loom::ModelError);  // not the model's parameters
    ZeroRedundancyOptimizer opt(model->parameters(), ctx.world(), adam());
    loss_of(model->forward(torch::ones({2, 1, 4, 4})), torch::zeros({2}, torch::kLong)).backward();
    ddp.finish();
    EXPECT_THROW(opt.shard_gradients(ddp), loom::ConfigError);  // after a synchronised backward
  });
}

TEST(ZeroRedundancyOptimizer, ShardCountsFollowTheWeights) {
  using loom::dp::zero_shard_counts;
  EXPECT_EQ(zero_shard_counts(10, {1, 1}), (std::vector<int64_t>{5, 5}));
  EXPECT_EQ(zero_shard_counts(11, {1, 1}), (std::vector<int64_t>{6, 5}));
  EXPECT_EQ(zero_shard_counts(100, {2, 1, 1}), (std::vector<int64_t>{50, 25, 25}));
  EXPECT_EQ(zero_shard_counts(7, {1, 0, 1}), (std::vector<int64_t>{4, 0, 3}));
  EXPECT_THROW(zero_shard_counts(7, {0, 0}), loom::ConfigError);
  EXPECT_THROW(zero_shard_counts(7, {1, -1}), loom::ConfigError);
}

}  // namespace
