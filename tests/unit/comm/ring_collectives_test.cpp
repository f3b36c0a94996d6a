// The ring reduce-scatter / all-gather over c10d send/recv (comm/ring_collectives.h),
// with ranks as threads over a real Gloo world group (loopback TCP).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "loom/comm/context.h"
#include "loom/comm/group.h"
#include "loom/comm/ring_collectives.h"
#include "loom/core/error.h"
#include "unit/dp/dp_testing.h"

namespace {

using loom::comm::Context;
using loom::comm::RingCollectives;
using loom::dp::testing::run_ranks;
using loom::dp::testing::run_ranks_collect;

std::unique_ptr<RingCollectives> ring_of(Context& ctx, int64_t piece_bytes) {
  RingCollectives::Options options;
  options.piece_bytes = piece_bytes;
  return std::make_unique<RingCollectives>(c10::intrusive_ptr<c10d::ProcessGroup>::reclaim_copy(&ctx.world().backend()),
                                           ctx.world().name(), ctx.world().global_ranks(), ctx.world().timeout(),
                                           options);
}

// Rank r's input: a deterministic pattern, different per rank.
at::Tensor input(int rank, int64_t n, at::ScalarType type) {
  return (torch::arange(n, torch::TensorOptions().dtype(type)) * (rank + 1) + rank).div(7);
}

int64_t total(const std::vector<int64_t>& counts) { return loom::dp::testing::sum_of(counts); }

// |a - b| relative to the largest |b| (1 when b is all small), NaN-safe.
double relative_diff(const at::Tensor& a, const at::Tensor& b) {
  return loom::test::max_abs_diff(a, b) / std::max(1.0, loom::test::max_abs({b}));
}

struct Case {
  std::vector<int64_t> counts;
  int64_t piece_bytes;
};

// On `world` ranks, for each case and dtype: reduce_scatter then all_gather of rank r's
// input. Checks each owner's range against the sum of every rank's input (1e-5
// relative for float), and that all_gather leaves every rank's buffer bitwise the
// concatenation of the owners' ranges.
void check_cases(int world, const std::vector<Case>& cases) {
  std::mutex mu;
  // [case][dtype][rank]: the buffer after reduce_scatter, then after all_gather.
  std::vector<std::vector<std::vector<at::Tensor>>> scattered(cases.size()), gathered(cases.size());
  for (size_t c = 0; c < cases.size(); ++c) {
    scattered[c].assign(2, std::vector<at::Tensor>(world));
    gathered[c].assign(2, std::vector<at::Tensor>(world));
  }
  run_ranks(world, [&](Context& ctx) {
    for (size_t c = 0; c < cases.size(); ++c) {
      auto ring = ring_of(ctx, cases[c].piece_bytes);
      for (int t = 0; t < 2; ++t) {
        const auto type = t == 0 ? at::kFloat : at::kDouble;
        at::Tensor buffer = input(ctx.rank(), total(cases[c].counts), type);
        ring->reduce_scatter(buffer, cases[c].counts)->wait();
        at::Tensor after_rs = buffer.clone();
        ring->all_gather(buffer, cases[c].counts)->wait();
        std::lock_guard<std::mutex> lock(mu);
        scattered[c][t][ctx.rank()] = after_rs;
        gathered[c][t][ctx.rank()] = buffer;
      }
    }
  });
  for (size_t c = 0; c < cases.size(); ++c) {
    const auto& counts = cases[c].counts;
    const std::string label = ::testing::PrintToString(counts) + " piece " + std::to_string(cases[c].piece_bytes);
    for (int t = 0; t < 2; ++t) {
      const auto type = t == 0 ? at::kFloat : at::kDouble;
      at::Tensor expected = torch::zeros({total(counts)}, torch::TensorOptions().dtype(type));
      for (int r = 0; r < world; ++r) expected += input(r, total(counts), type);
      // The concatenation of each owner's range, after reduce_scatter.
      std::vector<at::Tensor> owned;
      int64_t offset = 0;
      for (int r = 0; r < world; ++r) {
        const at::Tensor mine = scattered[c][t][r].narrow(0, offset, counts[r]);
        EXPECT_LE(relative_diff(mine, expected.narrow(0, offset, counts[r])), t == 0 ? 1e-5 : 1e-12)
            << label << " dtype " << type << " owner " << r;
        owned.push_back(mine);
        offset += counts[r];
      }
      const at::Tensor concatenation = torch::cat(owned);
      for (int r = 0; r < world; ++r) {
        EXPECT_TRUE(torch::equal(gathered[c][t][r], concatenation)) << label << " dtype " << type << " rank " << r;
      }
    }
  }
}

TEST(RingCollectives, TwoRanksEqualUnevenAndZeroCountsFloatAndDouble) {
  check_cases(2, {{{1, 0}, 1 << 20},
                  {{0, 1}, 1 << 20},
                  {{1000, 1000}, 1 << 20},
                  {{7, 123457}, 4096},
                  {{3 << 19, 3 << 19}, 1 << 20}});  // 3M floats: 6 pieces of 1 MiB per range
}

TEST(RingCollectives, ThreeRanksEqualUnevenAndZeroCountsFloatAndDouble) {
  check_cases(3, {{{1, 1, 1}, 1 << 20}, {{5, 0, 7}, 8}, {{333, 333, 333}, 1 << 20}, {{0, 100000, 1}, 4096}});
}

TEST(RingCollectives, FourRanksEqualUnevenAndZeroCountsFloatAndDouble) {
  check_cases(4, {{{0, 0, 0, 1}, 1 << 20},
                  {{5, 0, 123457, 3}, 4096},
                  {{3 << 18, 3 << 18, 3 << 18, 3 << 18}, 1 << 20}});  // 3M floats
}

TEST(RingCollectives, AllGatherCopiesEachOwnersRangeBitwise) {
  const std::vector<int64_t> counts{5, 0, 123457};
  run_ranks(3, [&](Context& ctx) {
    auto ring = ring_of(ctx, 4096);
    // Each rank's own range holds values of its own; the rest, garbage. (Not randn: the
    // ranks are threads sharing the default generator.)
    auto ranges = [&](int r) { return input(r, counts[r], torch::kDouble).sin(); };
    at::Tensor buffer = torch::full({total(counts)}, -1.0 - ctx.rank(), torch::kDouble);
    int64_t offset = 0;
    for (int r = 0; r < ctx.rank(); ++r) offset += counts[r];
    buffer.narrow(0, offset, counts[ctx.rank()]).copy_(ranges(ctx.rank()));
    ring->all_gather(buffer, counts)->wait();
    EXPECT_TRUE(torch::equal(buffer, torch::cat({ranges(0), ranges(1), ranges(2)})));
  });
}

TEST(RingCollectives, AGroupOfOneCompletesAtOnce) {
  run_ranks(1, [&](Context& ctx) {
    auto ring = ring_of(ctx, 1 << 20);
    at::Tensor buffer = input(0, 10, at::kFloat);
    auto work = ring->reduce_scatter(buffer, {10});
    EXPECT_TRUE(work->isCompleted());
    work->wait();
    EXPECT_TRUE(torch::equal(buffer, input(0, 10, at::kFloat)));
    ring->all_gather(buffer, {10})->wait();
    EXPECT_TRUE(torch::equal(buffer, input(0, 10, at::kFloat)));
  });
}

// Each buffer gets a reduce_scatter and then an all_gather, issued without waiting in
// between: only in issue order is every rank left with the whole sum.
TEST(RingCollectives, ManyQueuedOperationsCompleteInOrder) {
  run_ranks(3, [&](Context& ctx) {
    auto ring = ring_of(ctx, 256);
    constexpr int kOps = 30;
    const std::vector<int64_t> counts{100, 37, 263};
    std::vector<at::Tensor> buffers;
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    for (int k = 0; k < kOps; ++k) buffers.push_back(torch::full({400}, float(k + ctx.rank())));
    for (int k = 0; k < kOps; ++k) {
      works.push_back(ring->reduce_scatter(buffers[k], counts));
      works.push_back(ring->all_gather(buffers[k], counts));
    }
    for (size_t i = 0; i < works.size(); ++i) {
      works[i]->wait();
      for (size_t j = 0; j < i; ++j) EXPECT_TRUE(works[j]->isCompleted()) << j << " before " << i;
    }
    for (int k = 0; k < kOps; ++k) {
      EXPECT_TRUE(torch::equal(buffers[k], torch::full({400}, float(3 * k + 3)))) << k;
    }
  });
}

void expect_comm_error(const std::function<void()>& fn, const std::string& expected) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected: " << expected;
  } catch (const loom::CommError& e) {
    EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
  }
}

TEST(RingCollectives, BadArgumentsThrowCommErrorAtOnce) {
  run_ranks(2, [&](Context& ctx) {
    auto ring = ring_of(ctx, 1 << 20);
    expect_comm_error(
        [&] {
          ring->reduce_scatter(torch::zeros({4}, torch::kLong), {2, 2});
        },
        "reduce_scatter on group 'world': the buffer must be a dense contiguous CPU float32 or float64 tensor");
    expect_comm_error(
        [&] {
          ring->all_gather(torch::zeros({4, 2}).t(), {4, 4});
        },
        "all_gather on group 'world': the buffer must be a dense contiguous CPU float32 or float64 tensor");
    expect_comm_error([&] { ring->reduce_scatter(torch::zeros({4}), {4}); },
                      "reduce_scatter on group 'world': 1 counts for a group of 2 members");
    expect_comm_error(
        [&] {
          ring->reduce_scatter(torch::zeros({4}), {5, -1});
        },
        "reduce_scatter on group 'world': member 1's count is negative (-1)");
    expect_comm_error(
        [&] {
          ring->all_gather(torch::zeros({4}), {2, 3});
        },
        "all_gather on group 'world': the buffer holds 4 elements, but the counts add up to 5");
    expect_comm_error(
        [&] {
          ring->all_gather(at::Tensor(), {0, 0});
        },
        "all_gather on group 'world': the buffer must be a dense contiguous CPU float32 or float64 tensor");
    // Nothing was queued: a good operation still works.
    at::Tensor buffer = torch::full({4}, float(ctx.rank() + 1));
    ring->reduce_scatter(buffer, {2, 2})->wait();
    EXPECT_EQ(buffer[ctx.rank() * 2].item<float>(), 3.0f);
  });
}

TEST(RingCollectives, ARankThatNeverComesIsATimeoutNamingIt) {
  std::string first_error, second_error;
  double second_seconds = -1;
  const auto errors = run_ranks_collect(
      2,
      [&](Context& ctx) {
        if (ctx.rank() == 1) {
          std::this_thread::sleep_for(std::chrono::seconds(7));  // alive, but never joins
          return;
        }
        auto ring = ring_of(ctx, 1 << 20);
        auto first = ring->reduce_scatter(torch::ones({10}), {5, 5});
        auto second = ring->all_gather(torch::ones({10}), {5, 5});
        try {
          first->wait();
        } catch (const loom::TimeoutError& e) {
          first_error = e.what();
        }
        // Every later operation fails at once with the same error.
        const auto start = std::chrono::steady_clock::now();
        try {
          second->wait();
        } catch (const loom::TimeoutError& e) {
          second_error = e.what();
        }
        second_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      },
      std::chrono::seconds(4));  // enough to connect on a busy machine
  EXPECT_FALSE(errors[0]);
  EXPECT_FALSE(errors[1]);
  EXPECT_NE(first_error.find("reduce_scatter on group 'world' (recv from rank 1) timed out after 4000 ms waiting "
                             "for rank 1"),
            std::string::npos)
      << first_error;
  EXPECT_EQ(second_error, first_error);
  EXPECT_LT(second_seconds, 1.0);
}

}  // namespace
