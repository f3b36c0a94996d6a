// Group::reduce_scatter and Group::all_gather over one flat buffer with uneven counts, on
// both transports: the shared-memory segment (ranks as threads are on one machine) and
// the ring over Gloo send/recv (ContextOptions::shared_memory = false).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <mutex>
#include <string>
#include <vector>

#include "loom/comm/context.h"
#include "loom/comm/group.h"
#include "loom/comm/shm_collectives.h"
#include "loom/core/error.h"
#include "support/tensor_compare.h"
#include "support/thread_ranks.h"

namespace {

using loom::comm::Context;

// Rank r's values: a pattern that differs per rank and per element, not exact in binary.
at::Tensor input(int rank, int64_t n, at::ScalarType type) {
  return (torch::arange(n, torch::TensorOptions().dtype(type)) * (rank + 1) + rank).div(7);
}

int64_t sum(const std::vector<int64_t>& v) {
  int64_t s = 0;
  for (int64_t x : v) s += x;
  return s;
}

void run(int world, bool shared_memory, const std::function<void(Context&)>& fn) {
  auto options = loom::test::with_timeout(std::chrono::seconds(60));
  options.shared_memory = shared_memory;
  for (const auto& e : loom::test::run_thread_ranks(world, fn, options)) {
    if (e) std::rethrow_exception(e);
  }
}

struct Case {
  std::vector<int64_t> counts;
  at::ScalarType type;
};

// 3M floats = 12 MiB: many windows (slots) of the shared-memory segment.
std::vector<Case> cases(int world) {
  std::vector<Case> out;
  for (auto type : {at::kFloat, at::kDouble}) {
    out.push_back({std::vector<int64_t>(world, 1000), type});
    std::vector<int64_t> uneven{5, 0, 123457, 3};
    uneven.resize(world, 77);
    out.push_back({uneven, type});
  }
  std::vector<int64_t> big(world, (3 << 20) / world);
  big[0] += 11;
  out.push_back({big, at::kFloat});
  return out;
}

class Sharded : public ::testing::TestWithParam<std::tuple<int, bool>> {};

// Each owner's range after reduce_scatter holds the sum of every rank's values there
// (bitwise the allreduce's on shared memory, where both sum in rank order); after
// all_gather every rank holds every owner's range, bitwise.
TEST_P(Sharded, ReduceScatterSumsEachRangeAndAllGatherCopiesThemToEveryone) {
  const auto [world, shared_memory] = GetParam();
  std::mutex mu;
  std::vector<std::vector<at::Tensor>> scattered(world), gathered(world), reduced(world);
  run(world, shared_memory, [&](Context& ctx) {
    ASSERT_EQ(ctx.world().uses_shared_memory(), shared_memory);
    std::vector<at::Tensor> s, g, r;
    for (const auto& c : cases(world)) {
      at::Tensor buffer = input(ctx.rank(), sum(c.counts), c.type);
      std::vector<at::Tensor> whole{buffer.clone()};
      ctx.world().allreduce(whole).wait();
      ctx.world().reduce_scatter(buffer, c.counts).wait();
      s.push_back(buffer.clone());
      ctx.world().all_gather(buffer, c.counts).wait();
      g.push_back(buffer);
      r.push_back(whole[0]);
    }
    std::lock_guard<std::mutex> lock(mu);
    scattered[ctx.rank()] = s;
    gathered[ctx.rank()] = g;
    reduced[ctx.rank()] = r;
  });
  const auto all = cases(world);
  for (size_t i = 0; i < all.size(); ++i) {
    const auto& c = all[i];
    at::Tensor expected = input(0, sum(c.counts), c.type);
    for (int q = 1; q < world; ++q) expected = expected + input(q, sum(c.counts), c.type);
    int64_t offset = 0;
    for (int q = 0; q < world; ++q) {
      const at::Tensor mine = scattered[q][i].narrow(0, offset, c.counts[q]);
      const at::Tensor want = expected.narrow(0, offset, c.counts[q]);
      const double scale = want.numel() ? want.abs().max().item<double>() : 0.0;
      EXPECT_LE(loom::test::max_abs_diff(mine, want), 1e-5 * (1 + scale)) << "rank " << q << ", case " << i;
      if (shared_memory) {
        EXPECT_TRUE(torch::equal(mine, reduced[q][i].narrow(0, offset, c.counts[q])))
            << "rank " << q << ", case " << i << ": not bitwise the allreduce's";
      }
      offset += c.counts[q];
    }
    // After all_gather: every rank holds each owner's reduced range, bitwise.
    offset = 0;
    for (int owner = 0; owner < world; ++owner) {
      const at::Tensor own = scattered[owner][i].narrow(0, offset, c.counts[owner]);
      for (int q = 0; q < world; ++q) {
        EXPECT_TRUE(torch::equal(gathered[q][i].narrow(0, offset, c.counts[owner]), own))
            << "rank " << q << " has not owner " << owner << "'s range, case " << i;
      }
      offset += c.counts[owner];
    }
  }
}

// Many operations queued at once, mixed with allreduces, complete in order.
TEST_P(Sharded, QueuedOperationsCompleteInIssueOrder) {
  const auto [world, shared_memory] = GetParam();
  run(world, shared_memory, [&](Context& ctx) {
    const std::vector<int64_t> counts(world, 257);
    std::vector<at::Tensor> buffers;
    std::vector<loom::comm::Work> works;
    for (int k = 0; k < 8; ++k) {
      buffers.push_back(at::full({257 * world}, static_cast<float>(k + ctx.rank())));
      works.push_back(ctx.world().reduce_scatter(buffers.back(), counts));
      works.push_back(ctx.world().all_gather(buffers.back(), counts));
    }
    for (auto& w : works) w.wait();
    float base = 0;
    for (int q = 0; q < world; ++q) base += static_cast<float>(q);
    for (int k = 0; k < 8; ++k) {
      EXPECT_TRUE(torch::equal(buffers[k], at::full({257 * world}, base + static_cast<float>(k * world)))) << k;
    }
  });
}

INSTANTIATE_TEST_SUITE_P(Transports, Sharded,
                         ::testing::Combine(::testing::Values(2, 3, 4), ::testing::Values(true, false)),
                         [](const auto& info) {
                           return std::to_string(std::get<0>(info.param)) + "ranks_" +
                                  (std::get<1>(info.param) ? "shm" : "ring");
                         });

// Note [result area]: rank 1 pauses between an allreduce's last barrier and its copy-out
// while rank 0 goes straight on to the next operation; whatever that operation is, rank
// 1 must still copy out the allreduce's sums. (An all-gather that used the result area
// as a window overwrote them: a ZeRO-2 run lost half its trailer in 3 of 48 runs.)
TEST(ShmResultArea, AnOperationAfterAnAllreduceLeavesASlowPeersSumsAlone) {
  loom::comm::set_copy_out_pause_for_tests(1, std::chrono::milliseconds(50));
  for (const char* next : {"all_gather", "reduce_scatter", "allreduce"}) {
    run(2, true, [&](Context& ctx) {
      auto& g = ctx.world();
      ASSERT_TRUE(g.uses_shared_memory());
      // 3 MiB: three 1 MiB windows, so the next operation's pieces reach past one slot.
      const int64_t n = 3 << 18;
      std::vector<at::Tensor> t{input(ctx.rank(), n, at::kFloat)};
      auto first = g.allreduce(t);
      at::Tensor other = at::full({2 * n}, 1000.0f + ctx.rank());
      const std::vector<int64_t> counts{n, n};
      std::vector<at::Tensor> again{other.narrow(0, 0, n)};
      auto second = std::string(next) == "all_gather"       ? g.all_gather(other, counts)
                    : std::string(next) == "reduce_scatter" ? g.reduce_scatter(other, counts)
                                                            : g.allreduce(again);
      first.wait();
      second.wait();
      EXPECT_TRUE(torch::equal(t[0], input(0, n, at::kFloat) + input(1, n, at::kFloat)))
          << "rank " << ctx.rank() << ", then " << next << ": max |diff| "
          << loom::test::max_abs_diff(t[0], input(0, n, at::kFloat) + input(1, n, at::kFloat));
    });
  }
  loom::comm::set_copy_out_pause_for_tests(-1, std::chrono::microseconds(0));
}

TEST(ShardedArguments, BadCountsOrBuffersAreOneClearError) {
  run(2, true, [&](Context& ctx) {
    auto message = [&](const at::Tensor& b, const std::vector<int64_t>& counts) {
      try {
        ctx.world().reduce_scatter(b, counts).wait();
      } catch (const loom::CommError& e) {
        return std::string(e.what());
      }
      return std::string("no error");
    };
    EXPECT_NE(message(at::zeros({10}), {4, 5}).find("the buffer holds 10 elements, but the counts add up to 9"),
              std::string::npos);
    EXPECT_NE(message(at::zeros({10}), {10}).find("1 counts for a group of 2 members"), std::string::npos);
    EXPECT_NE(message(at::zeros({10}), {11, -1}).find("member 1's count is negative"), std::string::npos);
    EXPECT_NE(message(at::zeros({10}, at::kInt), {5, 5}).find("float32 or float64"), std::string::npos);
    EXPECT_NE(message(at::zeros({10, 2}).t(), {10, 10}).find("contiguous"), std::string::npos);
  });
}

}  // namespace
