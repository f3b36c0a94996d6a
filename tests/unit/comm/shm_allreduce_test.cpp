// The shared-memory allreduce behind Group::allreduce when every member runs on this
// machine (ranks as threads here: one machine by construction).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>

#include "loom/comm/context.h"
#include "loom/comm/group.h"
#include "loom/core/dist_env.h"
#include "loom/core/error.h"
#include "loom/launch/free_port.h"
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
  // 3M floats = 12 MiB: many 1 MiB windows; odd sizes too.
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
    // Every one of them went through shared memory, none through Gloo.
    EXPECT_TRUE(ctx.world().uses_shared_memory());
    EXPECT_EQ(ctx.world().allreduce_counts().shared_memory, 2 * static_cast<int64_t>(sizes.size()));
    EXPECT_EQ(ctx.world().allreduce_counts().c10d, 0);
    std::lock_guard<std::mutex> lock(mu);
    results[ctx.rank()] = out;
  });
  size_t i = 0;
  for (auto type : {at::kFloat, at::kDouble}) {
    for (int64_t n : sizes) {
      const at::Tensor expected = input(0, n, type) + input(1, n, type) + input(2, n, type);
      // Bitwise the sum in rank order, as one process adds them: the ranks' partitions,
      // the vectorized loop and the chunks change nothing in any element.
      EXPECT_TRUE(torch::equal(results[0][i], expected))
          << n << " max |diff| " << loom::test::max_abs_diff(results[0][i], expected);
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
        loom::comm::Work work = ctx.world().allreduce(t);
        try {
          work.wait();
        } catch (const loom::TimeoutError&) {
          work.wait();  // a failed operation stays failed: this must throw the same error again
        }
      },
      std::chrono::seconds(4));  // enough to connect on a busy machine
  ASSERT_TRUE(errors[0]) << "the second wait() on a failed allreduce returned normally";
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
    EXPECT_TRUE(ctx.world().uses_shared_memory());
    EXPECT_EQ(ctx.world().allreduce_counts().shared_memory, 0);
    EXPECT_EQ(ctx.world().allreduce_counts().c10d, 2);
  });
}

TEST(ShmAllreduce, CanBeTurnedOffAndGlooGivesTheSameSums) {
  loom::comm::ContextOptions options = loom::test::with_timeout(std::chrono::seconds(30));
  options.shared_memory = false;  // the CLI: LOOM_SHM_ALLREDUCE=0
  const auto errors = loom::test::run_thread_ranks(
      2,
      [&](Context& ctx) {
        std::vector<at::Tensor> t{input(ctx.rank(), 1000, at::kFloat)};
        ctx.world().allreduce(t).wait();
        EXPECT_LT(loom::test::max_abs_diff(t[0], input(0, 1000, at::kFloat) + input(1, 1000, at::kFloat)), 1e-4);
        EXPECT_FALSE(ctx.world().uses_shared_memory());
        EXPECT_EQ(ctx.world().allreduce_counts().shared_memory, 0);
        EXPECT_EQ(ctx.world().allreduce_counts().c10d, 1);
      },
      options);
  for (const auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
}

// A peer process killed while this one waits inside a shared-memory allreduce is named
// (rank and pid) within the engine's 50 ms liveness poll; the test allows 1 s for a busy
// machine. The peer is this test binary run again as rank 1 (ShmAllreducePeer below):
// fork + exec, so nothing of this process's threads is copied.
TEST(ShmAllreduce, APeerKilledDuringAnAllreduceIsNamedWithinASecond) {
  const int port = loom::launch::pick_free_port();
  const pid_t peer = fork();
  ASSERT_GE(peer, 0);
  if (peer == 0) {
    setenv("LOOM_TEST_SHM_PEER_PORT", std::to_string(port).c_str(), 1);
    execl("/proc/self/exe", "shm_peer", "--gtest_filter=ShmAllreducePeer.JoinsAsRankOneAndWaitsToBeKilled",
          static_cast<char*>(nullptr));
    _exit(127);
  }
  loom::DistEnv env;
  env.rank = 0;
  env.world_size = 2;
  env.master_port = port;
  loom::comm::ContextOptions options;
  options.timeout = std::chrono::seconds(30);
  std::atomic<int64_t> killed_at_ns{0};
  std::thread killer;
  // However this test ends, the peer does not outlive it.
  struct Reaper {
    pid_t pid;
    std::thread& killer;
    ~Reaper() {
      if (killer.joinable()) {
        killer.join();  // it kills and reaps the peer
      } else {
        kill(pid, SIGKILL);
        waitpid(pid, nullptr, 0);
      }
    }
  } reaper{peer, killer};
  auto ctx = Context::create(env, options);
  ASSERT_TRUE(ctx->world().uses_shared_memory());
  std::vector<at::Tensor> first{torch::ones({1000})};
  ctx->world().allreduce(first).wait();  // the peer took part in this one
  EXPECT_EQ(first[0][0].item<float>(), 2.0f);
  killer = std::thread([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // this rank is waiting by then
    kill(peer, SIGKILL);
    killed_at_ns = std::chrono::steady_clock::now().time_since_epoch().count();
    waitpid(peer, nullptr, 0);  // reaped, as a launcher does: a zombie still has its pid
  });
  std::vector<at::Tensor> second{torch::ones({1000})};
  const auto started = std::chrono::steady_clock::now();
  try {
    ctx->world().allreduce(second).wait();
    ADD_FAILURE() << "the allreduce completed without its peer";
  } catch (const loom::CommError& e) {
    const auto noticed = std::chrono::steady_clock::now();
    ASSERT_GT(killed_at_ns.load(), started.time_since_epoch().count()) << "failed before the peer was killed";
    const double after_kill_ms = (noticed.time_since_epoch().count() - killed_at_ns.load()) / 1e6;
    EXPECT_LT(after_kill_ms, 1000.0) << e.what();
    EXPECT_NE(std::string(e.what()).find("allreduce on group 'world' (shared memory) failed: rank 1 (pid " +
                                         std::to_string(peer) + ") exited"),
              std::string::npos)
        << e.what();
  }
}

// Rank 1 of the test above, only when that test runs it (skipped otherwise).
TEST(ShmAllreducePeer, JoinsAsRankOneAndWaitsToBeKilled) {
  const char* port = std::getenv("LOOM_TEST_SHM_PEER_PORT");
  if (!port) GTEST_SKIP() << "run by ShmAllreduce.APeerKilledDuringAnAllreduceIsNamedWithinASecond";
  loom::DistEnv env;
  env.rank = 1;
  env.world_size = 2;
  env.master_port = std::stoi(port);
  loom::comm::ContextOptions options;
  options.timeout = std::chrono::seconds(30);
  auto ctx = Context::create(env, options);
  std::vector<at::Tensor> first{torch::ones({1000})};
  ctx->world().allreduce(first).wait();
  std::this_thread::sleep_for(std::chrono::seconds(30));  // killed long before this ends
}

}  // namespace
