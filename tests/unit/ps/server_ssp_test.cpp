// ps::Server in ssp mode (bounded staleness): a fast worker's pull waits until the slow
// one is within the staleness bound.
#include "loom/ps/server.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <atomic>
#include <future>

#include "loom/core/error.h"
#include "unit/ps/ps_testing.h"

namespace loom::ps {
namespace {

using namespace loom::ps::testing;

TEST(PsServerSsp, StalenessOneBlocksTheFastWorkerUntilTheSlowOneCatchesUp) {
  auto ctx = std::make_shared<ZmqContext>();
  ServerOptions so = server_options(ctx, 2, Consistency::ssp, sgd(0.1));
  so.staleness = 1;
  ServerThread s(so);
  Worker w0(model_specs(), worker_options(ctx, {s.endpoint()}, 0));
  Worker w1(model_specs(), worker_options(ctx, {s.endpoint()}, 1));
  w0.init(initial_values());
  auto v0 = zeros_like_model(), v1 = zeros_like_model();
  w1.wait(w1.pull(v1, 0));
  // Worker 0 runs ahead: steps 0, 1, 2 (each pull answered: worker 1 is within 1 step).
  std::vector<std::vector<at::Tensor>> applied;
  for (int t = 0; t < 3; ++t) {
    const auto g = gradients(t, 0);
    w0.wait(w0.push(g, 0.5, t));
    applied.push_back(combine({g}, {0.5}));
    if (t == 0) {
      const auto g1 = gradients(0, 1);
      w1.wait(w1.push(g1, 0.5, 0));  // worker 1 has done 1 step
      applied.push_back(combine({g1}, {0.5}));
    }
    if (t < 2) w0.wait(w0.pull(v0, t + 1));  // clock 1, 2: needs worker 1 at >= 0, 1 steps
  }
  EXPECT_EQ(s.server().updates(), 8);
  // Clock 3 needs every worker at >= 2 steps: worker 1 has 1.
  std::atomic<bool> answered{false};
  auto pulled = std::async(std::launch::async, [&] {
    w0.wait(w0.pull(v0, 3));
    answered = true;
  });
  EXPECT_EQ(pulled.wait_for(400ms), std::future_status::timeout) << "clock 3 answered with worker 1 at 1 step";
  EXPECT_FALSE(answered);
  const auto g1 = gradients(1, 1);
  w1.wait(w1.push(g1, 0.5, 1));  // worker 1's 2nd step releases it
  applied.push_back(combine({g1}, {0.5}));
  ASSERT_EQ(pulled.wait_for(3s), std::future_status::ready);
  pulled.get();
  EXPECT_TRUE(answered);
  // Every push applied once, scaled by its weight (plain SGD: order only changes rounding).
  EXPECT_TRUE(all_close(v0, reference_run(sgd(0.1), applied), 1e-6));
  w0.done();
  w1.done();
  EXPECT_TRUE(s.finished_within(3s));
  EXPECT_NO_THROW(s.get());
}

}  // namespace
}  // namespace loom::ps
