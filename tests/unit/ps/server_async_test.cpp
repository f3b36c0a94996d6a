// ps::Server in async mode: each push is applied when it arrives, scaled by its weight,
// and pulls (also those of a push_pull) are answered at once.
#include "loom/ps/server.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "loom/core/error.h"
#include "unit/ps/ps_testing.h"

namespace loom::ps {
namespace {

using namespace loom::ps::testing;

TEST(PsServerAsync, EachPushIsAppliedOnArrivalScaledByItsWeight) {
  auto ctx = std::make_shared<ZmqContext>();
  ServerThread s(server_options(ctx, 2, Consistency::async, sgd(0.5)));
  Worker w0(model_specs(), worker_options(ctx, {s.endpoint()}, 0));
  Worker w1(model_specs(), worker_options(ctx, {s.endpoint()}, 1));
  w0.init(initial_values());
  const auto g0 = gradients(0, 0), g1 = gradients(0, 1), g2 = gradients(1, 0);
  auto scaled = [](const std::vector<at::Tensor>& g, double w) { return combine({g}, {w}); };

  w0.wait(w0.push(g0, 0.5, 0));
  EXPECT_EQ(s.server().updates(), 2);
  auto v0 = zeros_like_model();
  // Answered at once, whatever the clock, although worker 1 has not pushed anything.
  const auto start = Clock::now();
  w0.wait(w0.pull(v0, 7));
  EXPECT_LT(elapsed_ms(start), 1000);
  EXPECT_TRUE(all_equal(v0, reference_run(sgd(0.5), {scaled(g0, 0.5)})));

  w1.wait(w1.push(g1, 0.25, 0));
  w0.wait(w0.push(g2, 0.5, 1));
  auto v1 = zeros_like_model();
  w1.wait(w1.pull(v1, 0));
  EXPECT_TRUE(all_equal(v1, reference_run(sgd(0.5), {scaled(g0, 0.5), scaled(g1, 0.25), scaled(g2, 0.5)})));
  EXPECT_EQ(s.server().updates(), 6);
  w0.done();
  w1.done();
  EXPECT_TRUE(s.finished_within(3s));
  EXPECT_NO_THROW(s.get());
}

TEST(PsServerAsync, PushPullAnswersAtOnceWithItsOwnPushApplied) {
  auto ctx = std::make_shared<ZmqContext>();
  ServerThread s(server_options(ctx, 2, Consistency::async, sgd(0.5)));
  Worker w0(model_specs(), worker_options(ctx, {s.endpoint()}, 0));
  Worker w1(model_specs(), worker_options(ctx, {s.endpoint()}, 1));
  w0.init(initial_values());
  const auto g0 = gradients(0, 0), g1 = gradients(0, 1);
  auto scaled = [](const std::vector<at::Tensor>& g, double w) { return combine({g}, {w}); };
  auto v0 = zeros_like_model(), v1 = zeros_like_model();
  // Worker 1 has pushed nothing: worker 0 is answered anyway, with its push applied.
  w0.wait(w0.push_pull(g0, v0, 0.5, 0));
  EXPECT_TRUE(all_equal(v0, reference_run(sgd(0.5), {scaled(g0, 0.5)})));
  w1.wait(w1.push_pull(g1, v1, 0.25, 0));
  EXPECT_TRUE(all_equal(v1, reference_run(sgd(0.5), {scaled(g0, 0.5), scaled(g1, 0.25)})));
  EXPECT_EQ(s.server().updates(), 4);
  EXPECT_EQ(s.server().steps_pushed(), std::vector<int64_t>({1, 1}));
  w0.done();
  w1.done();
  EXPECT_TRUE(s.finished_within(3s));
  EXPECT_NO_THROW(s.get());
}

}  // namespace
}  // namespace loom::ps
