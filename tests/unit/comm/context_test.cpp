// Multi-rank tests of comm/: every rank is a thread of this process, with real Gloo
// process groups over loopback; they rendezvous through one in-process store
// (support/thread_ranks.h), except the test of the TCPStore rendezvous itself.
#include "loom/comm/context.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <functional>
#include <thread>

#include "loom/core/error.h"
#include "loom/launch/free_port.h"
#include "support/thread_ranks.h"

namespace {

using loom::comm::Context;
using loom::comm::ContextOptions;

// Runs fn(ctx) on `world` threads over one in-process store; rethrows the first failure.
void run_ranks(int world, const std::function<void(Context&)>& fn,
               std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
  for (auto& e : loom::test::run_thread_ranks(world, fn, loom::test::with_timeout(timeout))) {
    if (e) std::rethrow_exception(e);
  }
}

// The rendezvous real jobs use: rank 0 hosts a TCPStore on MASTER_PORT, the others join.
TEST(Context, RendezvousOverATcpStore) {
  const int port = loom::launch::pick_free_port();
  std::vector<std::thread> threads;
  std::vector<std::exception_ptr> errors(2);
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      try {
        loom::DistEnv env;
        env.rank = r;
        env.world_size = 2;
        env.master_port = port;
        auto ctx = Context::create(env);
        std::vector<at::Tensor> t{torch::full({3}, float(r + 1))};
        ctx->world().allreduce(t).wait();
        EXPECT_TRUE(t[0].equal(torch::full({3}, 3.0f)));
        if (r == 0) ctx->store_set("from0", "hello");
        EXPECT_EQ(ctx->store_get("from0"), "hello");
      } catch (...) {
        errors[r] = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
}

TEST(Context, WorldSizeOneNeedsNoNetwork) {
  loom::DistEnv env;    // rank 0 of 1
  env.master_port = 1;  // would fail if anything tried to connect
  auto ctx = Context::create(env);
  std::vector<at::Tensor> t{torch::ones({3})};
  ctx->world().allreduce(t).wait();
  EXPECT_TRUE(t[0].equal(torch::ones({3})));
  ctx->store_set("k", "v");
  EXPECT_EQ(ctx->store_get("k"), "v");
}

TEST(Context, AllreduceBroadcastAllgather) {
  run_ranks(3, [](Context& ctx) {
    const int r = ctx.rank();
    std::vector<at::Tensor> t{torch::full({4}, float(r + 1))};
    ctx.world().allreduce(t).wait();
    EXPECT_TRUE(t[0].equal(torch::full({4}, 6.0f)));

    std::vector<at::Tensor> b{torch::full({2}, float(r))};
    ctx.world().broadcast(b, 2).wait();
    EXPECT_TRUE(b[0].equal(torch::full({2}, 2.0f)));

    std::vector<at::Tensor> out{torch::zeros({1}), torch::zeros({1}), torch::zeros({1})};
    ctx.world().allgather(out, torch::full({1}, float(10 * r))).wait();
    for (int i = 0; i < 3; ++i) EXPECT_EQ(out[i].item<float>(), 10.0f * i);

    // The one-number helpers.
    EXPECT_EQ(ctx.world().allreduce_sum(r + 0.5), 4.5);
    EXPECT_EQ(ctx.world().allgather_values(r * 1.5), (std::vector<double>{0.0, 1.5, 3.0}));
    EXPECT_EQ(ctx.world().broadcast_value(r + 0.25, 1), 1.25);
    EXPECT_EQ(ctx.world().broadcast_values({double(r), -1.0 * r}, 2), (std::vector<double>{2.0, -2.0}));
  });
}

TEST(Context, TaggedSendRecvAndAnySource) {
  run_ranks(3, [](Context& ctx) {
    auto& g = ctx.world();
    if (ctx.rank() == 0) {
      // Two streams from rank 1, distinguished by tag, received out of order.
      std::vector<at::Tensor> b{torch::zeros({2})}, a{torch::zeros({2})};
      auto wb = g.recv(b, 1, /*tag=*/8);
      auto wa = g.recv(a, 1, /*tag=*/7);
      wa.wait();
      wb.wait();
      EXPECT_TRUE(a[0].equal(torch::full({2}, 7.0f)));
      EXPECT_TRUE(b[0].equal(torch::full({2}, 8.0f)));
      std::vector<at::Tensor> any{torch::zeros({1})};
      auto w = g.recv_any(any, 9);
      w.wait();
      EXPECT_EQ(w.source_rank(), 2);
      EXPECT_EQ(any[0].item<float>(), 2.0f);
    } else if (ctx.rank() == 1) {
      std::vector<at::Tensor> a{torch::full({2}, 7.0f)}, b{torch::full({2}, 8.0f)};
      g.send(a, 0, 7).wait();
      g.send(b, 0, 8).wait();
    } else {
      std::vector<at::Tensor> x{torch::full({1}, 2.0f)};
      g.send(x, 0, 9).wait();
    }
  });
}

TEST(Context, SubgroupsOfMembersOnly) {
  run_ranks(3, [](Context& ctx) {
    // Ranks 0 and 2 form a group; rank 1 is alone in another.
    if (ctx.rank() != 1) {
      auto g = ctx.new_group({0, 2}, "even");
      EXPECT_EQ(g->size(), 2);
      EXPECT_EQ(g->rank(), ctx.rank() == 0 ? 0 : 1);
      EXPECT_EQ(g->global_rank(1), 2);
      std::vector<at::Tensor> t{torch::full({1}, float(ctx.rank()))};
      g->allreduce(t).wait();
      EXPECT_EQ(t[0].item<float>(), 2.0f);
    } else {
      auto g = ctx.new_group({1}, "odd");
      EXPECT_EQ(g->size(), 1);
      EXPECT_THROW(ctx.new_group({0, 2}, "bad"), loom::ConfigError);
    }
    ctx.world().barrier().wait();
  });
}

TEST(Context, SilentPeerTimesOutWithNamedOperation) {
  const auto start = std::chrono::steady_clock::now();
  try {
    run_ranks(
        2,
        [](Context& ctx) {
          if (ctx.rank() == 0) {
            std::vector<at::Tensor> t{torch::ones({4})};
            ctx.world().allreduce(t).wait();  // rank 1 never joins
          } else {
            std::this_thread::sleep_for(std::chrono::milliseconds(7000));
          }
        },
        std::chrono::milliseconds(4000));
    FAIL() << "no timeout";
  } catch (const loom::CommError& e) {
    EXPECT_NE(std::string(e.what()).find("allreduce on group 'world'"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(15));
}

TEST(Context, StoreGetTimesOutNamingTheKey) {
  run_ranks(
      2,
      [](Context& ctx) {
        if (ctx.rank() == 0) {
          try {
            ctx.store_get("never-set");
            ADD_FAILURE() << "no timeout";
          } catch (const loom::CommError& e) {
            EXPECT_NE(std::string(e.what()).find("never-set"), std::string::npos) << e.what();
          }
        }
      },
      std::chrono::milliseconds(4000));
}

TEST(Context, UnreachableMasterFailsWithinTimeout) {
  loom::DistEnv env;
  env.rank = 1;
  env.world_size = 2;
  env.master_port = loom::launch::pick_free_port();  // nobody listens there
  ContextOptions opts;
  opts.timeout = std::chrono::milliseconds(1500);
  const auto start = std::chrono::steady_clock::now();
  try {
    Context::create(env, opts);
    FAIL();
  } catch (const loom::CommError& e) {
    EXPECT_NE(std::string(e.what()).find("cannot join the rendezvous store"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

}  // namespace
