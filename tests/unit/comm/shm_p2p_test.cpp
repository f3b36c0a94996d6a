// Point-to-point through the shared-memory rings behind Group::send / recv / recv_any
// when every member runs on this machine (ranks as threads here).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>
#include <thread>

#include "loom/comm/context.h"
#include "loom/comm/group.h"
#include "loom/comm/shm_p2p.h"
#include "loom/core/error.h"
#include "unit/dp/dp_testing.h"

namespace {

using loom::comm::Context;
using loom::dp::testing::run_ranks;
using loom::dp::testing::run_ranks_collect;

at::Tensor pattern(int64_t n, at::ScalarType type, int seed) {
  return (torch::arange(n, torch::TensorOptions().dtype(at::kDouble)) * (seed + 1) + seed).div(3).to(type);
}

TEST(ShmP2p, MessagesOfEveryDtypeAndSizeArriveBitwise) {
  // 5 MiB does not fit in a 4 MiB ring: it goes through Gloo, announced in the ring.
  const std::vector<int64_t> sizes{0, 1, 17, 33'000, 5 << 18};
  const std::vector<at::ScalarType> types{at::kFloat, at::kDouble, at::kLong, at::kByte};
  run_ranks(2, [&](Context& ctx) {
    auto& g = ctx.world();
    int tag = 0;
    std::vector<loom::comm::Work> sends;
    std::vector<std::vector<at::Tensor>> keep;
    for (auto type : types) {
      for (int64_t n : sizes) {
        if (ctx.rank() == 0) {
          keep.push_back({pattern(n, type, tag)});
          sends.push_back(g.send(keep.back(), 1, tag));
        } else {
          std::vector<at::Tensor> got{torch::full({n}, 7, torch::TensorOptions().dtype(type))};
          g.recv(got, 0, tag).wait();
          EXPECT_TRUE(torch::equal(got[0], pattern(n, type, tag))) << n << " " << type;
        }
        ++tag;
      }
    }
    for (auto& s : sends) s.wait();
    if (ctx.rank() == 0) {
      // In the rings, and through Gloo: the 5M-element tensors of 4 and 8 bytes (the
      // 1.25 MiB of bytes fits).
      EXPECT_EQ(g.message_counts().shared_memory, 17);
      EXPECT_EQ(g.message_counts().redirected, 3);
    }
  });
}

TEST(ShmP2p, ATagReceivedBeforeAnEarlierOneFindsItsMessage) {
  run_ranks(2, [&](Context& ctx) {
    auto& g = ctx.world();
    if (ctx.rank() == 0) {
      for (int tag : {1, 2, 3}) {
        std::vector<at::Tensor> t{torch::full({100}, float(tag))};
        g.send(t, 1, tag).wait();
      }
    } else {
      for (int tag : {3, 1, 2}) {  // 1 and 2 are set aside while looking for 3
        std::vector<at::Tensor> t{torch::zeros({100})};
        g.recv(t, 0, tag).wait();
        EXPECT_EQ(t[0][99].item<float>(), float(tag));
      }
    }
  });
}

// A message too big for the ring goes through Gloo. Its sender here waits for that send
// before sending the next; the receiver waits for the next one first. The receive of
// the big one must be posted as soon as its announcement is read, or neither moves.
TEST(ShmP2p, ABigMessageSetAsideIsReceivedWhileItsSenderWaits) {
  run_ranks(2, [&](Context& ctx) {
    auto& g = ctx.world();
    if (ctx.rank() == 0) {
      std::vector<at::Tensor> big{torch::full({2 << 20}, 3.0f)}, small{torch::full({4}, 5.0f)};
      g.send(big, 1, 1).wait();
      g.send(small, 1, 2).wait();
      EXPECT_EQ(g.message_counts().redirected, 1);
    } else {
      std::vector<at::Tensor> big{torch::zeros({2 << 20})}, small{torch::zeros({4})};
      auto second = g.recv(small, 0, 2);
      second.wait();
      g.recv(big, 0, 1).wait();
      EXPECT_EQ(small[0][3].item<float>(), 5.0f);
      EXPECT_EQ(big[0][(2 << 20) - 1].item<float>(), 3.0f);
    }
  });
}

// Both ranks send 24 MiB to each other before receiving anything: the rings fill, and
// the rest goes through Gloo; nothing waits for the other side's receive.
TEST(ShmP2p, RanksThatSendToEachOtherBeforeReceivingDoNotDeadlock) {
  run_ranks(2, [&](Context& ctx) {
    auto& g = ctx.world();
    const int peer = 1 - ctx.rank();
    std::vector<std::vector<at::Tensor>> out, in;
    std::vector<loom::comm::Work> sends;
    for (int k = 0; k < 24; ++k) {
      out.push_back({torch::full({1 << 18}, float(100 * ctx.rank() + k))});
      sends.push_back(g.send(out.back(), peer, k));
    }
    // Every send made before any receive (else a receiver that keeps up with a
    // descheduled sender leaves it nothing to redirect).
    g.barrier().wait();
    for (int k = 0; k < 24; ++k) {
      in.push_back({torch::zeros({1 << 18})});
      g.recv(in.back(), peer, k).wait();
      EXPECT_EQ(in.back()[0][12345].item<float>(), float(100 * peer + k));
    }
    for (auto& s : sends) s.wait();
    EXPECT_GT(g.message_counts().redirected, 0);
    EXPECT_GT(g.message_counts().shared_memory, 0);
  });
}

// Two threads of rank 0 receive from rank 1 with different tags; rank 1 sends tag 1 only
// after thread B has received tag 2 and answered. A receive that sleeps must not keep the
// other from the source's ring (tags are independent streams, as over Gloo).
TEST(ShmP2p, ReceivesOfTwoThreadsFromOneSourceDoNotBlockEachOther) {
  run_ranks(2, [&](Context& ctx) {
    auto& g = ctx.world();
    if (ctx.rank() == 1) {
      std::vector<at::Tensor> two{torch::full({4}, 2.0f)}, three{torch::zeros({4})}, one{torch::full({4}, 1.0f)};
      g.send(two, 0, 2).wait();
      g.recv(three, 0, 3).wait();
      g.send(one, 0, 1).wait();
      return;
    }
    std::vector<at::Tensor> one{torch::zeros({4})};
    std::thread a([&] { g.recv(one, 1, 1).wait(); });
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // let A wait first
    std::vector<at::Tensor> two{torch::zeros({4})}, three{torch::full({4}, 3.0f)};
    g.recv(two, 1, 2).wait();
    g.send(three, 1, 3).wait();
    a.join();
    EXPECT_EQ(one[0][0].item<float>(), 1.0f);
    EXPECT_EQ(two[0][0].item<float>(), 2.0f);
  });
}

// Records that fill the ring to the last byte before anyone receives: the next send in
// each direction still announces itself (a reserve is kept for that) and does not wait.
TEST(ShmP2p, RanksThatFillTheRingExactlyStillSend) {
  run_ranks(2, [&](Context& ctx) {
    auto& g = ctx.world();
    const int peer = 1 - ctx.rank();
    const int64_t floats = (1 << 18) - 16;  // 1 MiB - 64 bytes: four records are exactly 4 MiB
    std::vector<std::vector<at::Tensor>> out, in;
    std::vector<loom::comm::Work> sends;
    for (int k = 0; k < 6; ++k) {
      out.push_back({torch::full({floats}, float(10 * ctx.rank() + k))});
      sends.push_back(g.send(out.back(), peer, k));
    }
    for (int k = 0; k < 6; ++k) {
      in.push_back({torch::zeros({floats})});
      g.recv(in.back(), peer, k).wait();
      EXPECT_EQ(in.back()[0][floats - 1].item<float>(), float(10 * peer + k));
    }
    for (auto& s : sends) s.wait();
  });
}

TEST(ShmP2p, RecvAnyNamesTheSender) {
  run_ranks(3, [&](Context& ctx) {
    auto& g = ctx.world();
    if (ctx.rank() > 0) {
      std::vector<at::Tensor> t{torch::full({8}, float(ctx.rank()))};
      g.send(t, 0, 9).wait();
      return;
    }
    int seen = 0;
    for (int k = 0; k < 2; ++k) {
      std::vector<at::Tensor> t{torch::zeros({8})};
      auto w = g.recv_any(t, 9);
      w.wait();
      EXPECT_EQ(t[0][0].item<float>(), float(w.source_rank()));
      seen |= 1 << w.source_rank();
    }
    EXPECT_EQ(seen, 0b110);
  });
}

TEST(ShmP2p, AMessageOfAnotherSizeIsAClearError) {
  const auto errors = run_ranks_collect(2, [&](Context& ctx) {
    auto& g = ctx.world();
    if (ctx.rank() == 0) {
      std::vector<at::Tensor> t{torch::ones({10})};
      g.send(t, 1, 4).wait();
    } else {
      std::vector<at::Tensor> t{torch::zeros({12})};
      g.recv(t, 0, 4).wait();
    }
  });
  ASSERT_FALSE(errors[0]);
  ASSERT_TRUE(errors[1]);
  try {
    std::rethrow_exception(errors[1]);
  } catch (const loom::CommError& e) {
    EXPECT_NE(std::string(e.what()).find("the message has 40 bytes, the receive expected 48"), std::string::npos)
        << e.what();
  }
}

TEST(ShmP2p, AMessageThatNeverComesIsATimeoutNamingTheSender) {
  const auto errors = run_ranks_collect(
      2,
      [&](Context& ctx) {
        if (ctx.rank() == 1) {
          std::this_thread::sleep_for(std::chrono::seconds(7));  // alive, but never sends
          return;
        }
        std::vector<at::Tensor> t{torch::ones({10})};
        ctx.world().recv(t, 1, 3).wait();
      },
      std::chrono::seconds(4));
  ASSERT_TRUE(errors[0]);
  try {
    std::rethrow_exception(errors[0]);
  } catch (const loom::TimeoutError& e) {
    EXPECT_NE(std::string(e.what()).find("recv from rank 1 (tag 3) on group 'world' (shared memory) timed out after "
                                         "4000 ms"),
              std::string::npos)
        << e.what();
  }
}

// A group's rings take memory only once used: of a 4-rank group's 12 rings of 4 MiB, a
// message allocates its sender's ring, and nothing else grows.
TEST(ShmP2p, OnlyTheRingsInUseTakeMemory) {
  run_ranks(4, [&](Context& ctx) {
    auto& g = ctx.world();
    const int64_t before = g.shared_memory_bytes();
    // The collectives' 4 slots and result area of 1 MiB, and the rings' headers and
    // first pages: not 48 MiB.
    EXPECT_GT(before, 5 << 20);
    EXPECT_LT(before, 6 << 20);
    g.barrier().wait();
    std::vector<at::Tensor> t{torch::full({1000}, 2.0f)};
    if (ctx.rank() == 0) g.send(t, 1, 5).wait();
    if (ctx.rank() == 1) g.recv(t, 0, 5).wait();
    g.barrier().wait();
    EXPECT_EQ(g.shared_memory_bytes(), before + (4 << 20) - 4096);
    EXPECT_EQ(t[0][999].item<float>(), 2.0f);
  });
}

// A ring whose allocation fails (as with a full /dev/shm) stays one page long: small
// messages go through it (up to 1984 bytes beside the reserve kept for redirects),
// bigger ones through Gloo, and every one arrives. (Gloo's send completes only once
// its receiver has posted the receive: each wait here is for one message at a time.)
TEST(ShmP2p, ARingThatCannotGrowSendsBigMessagesThroughGloo) {
  loom::comm::ShmP2p::fail_ring_allocation_for_tests(true);
  struct Reset {
    ~Reset() { loom::comm::ShmP2p::fail_ring_allocation_for_tests(false); }
  } reset;
  run_ranks(2, [&](Context& ctx) {
    auto& g = ctx.world();
    const int64_t before = g.shared_memory_bytes();
    const std::vector<int64_t> sizes{100, 100'000, 496};
    for (int tag = 0; tag < 3; ++tag) {
      std::vector<at::Tensor> t{ctx.rank() == 0 ? pattern(sizes[tag], at::kFloat, tag) : torch::zeros({sizes[tag]})};
      if (ctx.rank() == 0) g.send(t, 1, tag).wait();
      if (ctx.rank() == 1) {
        g.recv(t, 0, tag).wait();
        EXPECT_TRUE(torch::equal(t[0], pattern(sizes[tag], at::kFloat, tag))) << sizes[tag];
      }
    }
    if (ctx.rank() == 0) {
      EXPECT_EQ(g.message_counts().shared_memory, 2);
      EXPECT_EQ(g.message_counts().redirected, 1);
    }
    EXPECT_EQ(g.shared_memory_bytes(), before);
  });
}

// A receive posted before a blocking operation, and waited for after it, gets a message
// too big for the ring whose sender waits for its send before that operation: its
// receive from Gloo (where the message goes) is posted without anyone waiting, as a
// Gloo receive is posted when it is made (Note [receives posted early]).
TEST(ShmP2p, AReceivePostedEarlyTakesABigMessageBeforeItIsWaitedFor) {
  run_ranks(
      2,
      [&](Context& ctx) {
        auto& g = ctx.world();
        const int64_t n = 2 << 20;  // 8 MiB: redirected
        std::vector<at::Tensor> big{ctx.rank() == 1 ? torch::full({n}, 4.0f) : torch::zeros({n})};
        if (ctx.rank() == 0) {
          auto w = g.recv(big, 1, 3);
          g.barrier().wait();
          w.wait();
          EXPECT_EQ(big[0][n - 1].item<float>(), 4.0f);
        } else {
          g.send(big, 0, 3).wait();
          g.barrier().wait();
          EXPECT_EQ(g.message_counts().redirected, 1);
        }
      },
      std::chrono::seconds(10));
}

}  // namespace
