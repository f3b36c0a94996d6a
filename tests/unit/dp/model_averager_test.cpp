#include "loom/dp/model_averager.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "loom/comm/group.h"
#include "loom/core/error.h"
#include "loom/models/registry.h"
#include "unit/dp/dp_testing.h"

namespace {

using loom::comm::Context;
using loom::dp::ModelAverager;
namespace t = loom::dp::testing;

constexpr int kSteps = 20;

torch::nn::Sequential model(uint64_t seed = 3) {
  torch::set_num_threads(1);
  loom::models::ModelOptions o;
  o.sample_shape = {1, 4, 4};
  o.num_classes = 5;
  o.seed = seed;
  return loom::models::make_model("mlp", o);
}

at::Tensor loss_of(torch::nn::Sequential& m, const at::Tensor& x, const at::Tensor& y) {
  return torch::nn::functional::cross_entropy(m->forward(x), y);
}

std::vector<at::Tensor> reference_run(const t::Batches& data) {
  auto m = model();
  torch::optim::SGD opt(m->parameters(), torch::optim::SGDOptions(0.1));
  for (int s = 0; s < kSteps; ++s) {
    opt.zero_grad();
    loss_of(m, data.x[s], data.y[s]).backward();
    opt.step();
  }
  return t::snapshot(*m);
}

// Local plain SGD on each rank's slice, averaged after every step (K = 1).
std::vector<std::vector<at::Tensor>> local_sgd(const std::vector<int64_t>& counts, const t::Batches& data,
                                               bool use_step) {
  const int world = static_cast<int>(counts.size());
  std::vector<torch::nn::Sequential> models;
  for (int r = 0; r < world; ++r) models.push_back(model());
  std::vector<std::vector<at::Tensor>> results(world);
  t::run_ranks(world, [&](Context& ctx) {
    const int r = ctx.rank();
    auto m = models[r];
    const int64_t off = t::offsets_of(counts)[r], n = counts[r];
    const double share = double(n) / double(t::sum_of(counts));
    torch::optim::SGD opt(m->parameters(), torch::optim::SGDOptions(0.1));
    ModelAverager averager(ctx.world(), {/*period=*/1});
    for (int s = 0; s < kSteps; ++s) {
      opt.zero_grad();
      loss_of(m, data.x[s].narrow(0, off, n), data.y[s].narrow(0, off, n)).backward();
      opt.step();
      if (use_step) {
        EXPECT_TRUE(averager.step(*m, n));
      } else {
        ModelAverager::average(*m, ctx.world(), share);
      }
    }
    results[r] = t::snapshot(*m);
  });
  return results;
}

TEST(ModelAverager, PeriodOneEqualsGradientAveraging) {
  const auto data = t::make_batches(kSteps, 12, {1, 4, 4}, 5);
  const auto ref = reference_run(data);
  for (const auto& r : local_sgd({6, 6}, data, /*use_step=*/false)) EXPECT_LE(t::max_abs_diff(r, ref), 1e-5);
}

TEST(ModelAverager, SampleWeightedStepEqualsGradientAveragingWithUnevenShares) {
  const auto data = t::make_batches(kSteps, 16, {1, 4, 4}, 5);
  const auto ref = reference_run(data);
  for (const auto& r : local_sgd({8, 4, 4}, data, /*use_step=*/true)) EXPECT_LE(t::max_abs_diff(r, ref), 1e-5);
}

TEST(ModelAverager, LongerPeriodAveragesEveryKSteps) {
  std::vector<torch::nn::Sequential> models{model(1), model(2)};
  std::vector<std::vector<at::Tensor>> results(2);
  t::run_ranks(2, [&](Context& ctx) {
    auto m = models[ctx.rank()];
    ModelAverager averager(ctx.world(), {/*period=*/3});
    for (int s = 0; s < 6; ++s) {
      {
        torch::NoGradGuard g;
        for (auto& p : m->parameters()) p.add_(0.01 * (ctx.rank() + 1));
      }
      EXPECT_EQ(averager.step(*m, ctx.rank() == 0 ? 1 : 3), s % 3 == 2);
    }
    EXPECT_EQ(averager.averages(), 2);
    results[ctx.rank()] = t::snapshot(*m);
  });
  EXPECT_LE(t::max_abs_diff(results[0], results[1]), 1e-6);
}

TEST(ModelAverager, PeriodMustBePositive) {
  auto ctx = Context::create(loom::DistEnv{});  // world size 1
  EXPECT_THROW(ModelAverager(ctx->world(), {0}), loom::ConfigError);
  auto m = model();
  const auto before = t::snapshot(*m);
  ModelAverager::average(*m, ctx->world(), 1.0);  // alone: unchanged
  EXPECT_EQ(t::max_abs_diff(t::snapshot(*m), before), 0.0);
}

}  // namespace
