// The shared-memory allreduce behind Group::allreduce when every member runs on this
// machine (ranks as threads here: one machine by construction).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <atomic>
#include <cstdlib>
#include <mutex>

#include "loom/comm/context.h"
#include "loom/comm/group.h"
#include "loom/core/error.h"
#include "unit/dp/dp_testing.h"

namespace {

using loom::comm::Context;
using loom::dp::testing::run_ranks;
using loom::dp::testing::run_ranks_collect;

// Rank r's input: a deterministic pattern, different per rank.
at::Tensor input(int rank, int64_t n, at::ScalarType type) {
  return (torch::arange(n, torch::TensorOptions().dtype(type)) * (rank + 1) + rank).div(7);
}

TEST(ShmAllreduce, SumsFloatAndDoubleTensorsOfAnySizeBitwiseAlikeOnEveryRank) {
  // 3M floats = 12 MiB: more than one 8 MiB slot, so in two chunks; odd sizes too.
  const std::vector<int64_t> sizes{1, 7, 1000, 3 << 20};
  std::mutex mu;
  std::vector<std::vector<at::Tensor>> results(3);
  run_ranks(3, [&](Context& ctx) {
    std::vector<at::Tensor> out;
    for (auto type : {at::kFloat, at::kDouble}) {
      for (int64_t n : sizes) {
        std::vector<at::Tensor> t{input(ctx.rank(), n, type)};
        auto called = std::make_shared<std::atomic<bool>>(false);
        auto work = ctx.world().allreduce(t);
        work.on_completion([called] { *called = true; });
        work.wait();
        EXPECT_TRUE(called->load());  // the shared-memory path calls back before waking waiters
        out.push_back(t[0]);
      }
    }
    std::lock_guard<std::mutex> lock(mu);
    results[ctx.rank()] = out;
  });
  size_t i = 0;
  for (auto type : {at::kFloat, at::kDouble}) {
    for (int64_t n : sizes) {
      const at::Tensor expected = input(0, n, type) + input(1, n, type) + input(2, n, type);
      EXPECT_LT((results[0][i] - expected).abs().max().item<double>(), 1e-3) << n;
      EXPECT_TRUE(torch::equal(results[0][i], results[1][i])) << n;
      EXPECT_TRUE(torch::equal(results[0][i], results[2][i])) << n;
      ++i;
    }
  }
}

TEST(ShmAllreduce, ManyQueuedOperationsCompleteInOrder) {
  run_ranks(2, [&](Context& ctx) {
    std::vector<std::vector<at::Tensor>> ts;
    std::vector<loom::comm::Work> works;
    for (int k = 0; k < 50; ++k) ts.push_back({torch::full({1000}, float(k + ctx.rank()))});
    for (int k = 0; k < 50; ++k) works.push_back(ctx.world().allreduce(ts[k]));
    for (int k = 0; k < 50; ++k) {
      works[k].wait();
      EXPECT_EQ(ts[k][0][999].item<float>(), float(2 * k + 1));
    }
  });
}

TEST(ShmAllreduce, ARankThatNeverComesIsATimeoutNamingIt) {
  const auto errors = run_ranks_collect(
      2,
      [&](Context& ctx) {
        if (ctx.rank() == 1) {
          std::this_thread::sleep_for(std::chrono::seconds(7));  // alive, but never joins
          return;
        }
        std::vector<at::Tensor> t{torch::ones({10})};
        ctx.world().allreduce(t).wait();
      },
      std::chrono::seconds(4));  // enough to connect on a busy machine
  ASSERT_TRUE(errors[0]);
  try {
    std::rethrow_exception(errors[0]);
  } catch (const loom::TimeoutError& e) {
    EXPECT_NE(std::string(e.what()).find("allreduce on group 'world' (shared memory) timed out after 4000 ms waiting "
                                         "for rank 1"),
              std::string::npos)
        << e.what();
  }
}

TEST(ShmAllreduce, OtherOpsAndDtypesStillUseGloo) {
  run_ranks(2, [&](Context& ctx) {
    std::vector<at::Tensor> ints{torch::full({4}, int64_t(ctx.rank() + 1))};
    ctx.world().allreduce(ints).wait();
    EXPECT_EQ(ints[0][0].item<int64_t>(), 3);
    std::vector<at::Tensor> m{torch::full({4}, float(ctx.rank()))};
    ctx.world().allreduce(m, loom::comm::ReduceOp::max).wait();
    EXPECT_EQ(m[0][0].item<float>(), 1.0f);
  });
}

TEST(ShmAllreduce, CanBeTurnedOffAndGlooGivesTheSameSums) {
  setenv("LOOM_SHM_ALLREDUCE", "0", 1);
  run_ranks(2, [&](Context& ctx) {
    std::vector<at::Tensor> t{input(ctx.rank(), 1000, at::kFloat)};
    ctx.world().allreduce(t).wait();
    EXPECT_LT((t[0] - input(0, 1000, at::kFloat) - input(1, 1000, at::kFloat)).abs().max().item<double>(), 1e-4);
  });
  unsetenv("LOOM_SHM_ALLREDUCE");
}

}  // namespace
