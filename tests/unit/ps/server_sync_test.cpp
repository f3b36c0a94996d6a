// ps::Server in sync mode, driven by ps::Worker clients over inproc://: the maths against
// libtorch's own optimizers (weighted sums, momentum, Adam, parameters split over two
// servers), and a pull of clock c waiting for the update of step c - 1.
#include "loom/ps/server.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <future>

#include "loom/core/error.h"
#include "unit/ps/ps_testing.h"

namespace loom::ps {
namespace {

using namespace loom::ps::testing;

struct SyncRun {
  std::vector<std::vector<at::Tensor>> after_step;  // worker 0's values after each step
  ShardPlan plan;
  int64_t updates = 0;
};

// Two workers (weights 0.75 / 0.25) over `servers` sync servers, `steps` steps of
// push(gradients(t, w)) + pull(t + 1), or push_pull when `fused`. Checks that both
// workers always hold the same values and that every server returns once both are done.
SyncRun run_sync(int servers, int64_t slice_bytes, const optim::OptimizerOptions& o, int steps,
                 const std::vector<double>& weights = {0.75, 0.25}, bool fused = false) {
  auto ctx = std::make_shared<ZmqContext>();
  std::vector<std::unique_ptr<ServerThread>> threads;
  std::vector<std::string> endpoints;
  for (int i = 0; i < servers; ++i) {
    ServerOptions so = server_options(ctx, 2, Consistency::sync, o);
    so.server_index = i;
    threads.push_back(std::make_unique<ServerThread>(so));
    endpoints.push_back(threads.back()->endpoint());
  }
  Worker w0(model_specs(), worker_options(ctx, endpoints, 0, slice_bytes));
  Worker w1(model_specs(), worker_options(ctx, endpoints, 1, slice_bytes));
  w0.init(initial_values());
  auto v0 = zeros_like_model(), v1 = zeros_like_model();
  w0.wait(w0.pull(v0, 0));
  w1.wait(w1.pull(v1, 0));
  EXPECT_TRUE(all_equal(v0, initial_values()));
  EXPECT_TRUE(all_equal(v1, initial_values()));
  SyncRun run;
  run.plan = w0.plan();
  for (int t = 0; t < steps; ++t) {
    const auto g0 = gradients(t, 0), g1 = gradients(t, 1);
    if (fused) {
      const auto q0 = w0.push_pull(g0, v0, weights[0], t);
      const auto q1 = w1.push_pull(g1, v1, weights[1], t);
      w0.wait(q0);
      w1.wait(q1);
    } else {
      const auto p0 = w0.push(g0, weights[0], t);
      const auto p1 = w1.push(g1, weights[1], t);
      const auto q0 = w0.pull(v0, t + 1);
      const auto q1 = w1.pull(v1, t + 1);
      w0.wait(p0);
      w0.wait(q0);
      w1.wait(p1);
      w1.wait(q1);
    }
    EXPECT_TRUE(all_equal(v0, v1)) << "step " << t;
    run.after_step.push_back(clone_all(v0));
  }
  w0.done();
  w1.done();
  for (auto& s : threads) {
    EXPECT_TRUE(s->finished_within(3s));
    EXPECT_NO_THROW(s->get());
    run.updates += s->server().updates();
    EXPECT_EQ(s->server().steps_pushed(), std::vector<int64_t>({steps, steps}));
  }
  return run;
}

std::vector<std::vector<at::Tensor>> combined_gradients(int steps, const std::vector<double>& weights) {
  std::vector<std::vector<at::Tensor>> out;
  for (int t = 0; t < steps; ++t) out.push_back(combine({gradients(t, 0), gradients(t, 1)}, weights));
  return out;
}

TEST(PsServerSync, PlainSgdAppliesTheWeightedSumOfBothPushes) {
  const double lr = 0.1;
  const SyncRun run = run_sync(1, int64_t{4} << 20, sgd(lr), 1);
  // By formula: param - lr * (0.75 g0 + 0.25 g1), computed with the server's operations.
  const auto g0 = gradients(0, 0), g1 = gradients(0, 1);
  std::vector<at::Tensor> expected;
  for (size_t p = 0; p < g0.size(); ++p) {
    at::Tensor c = g0[p].mul(0.75);
    c.add_(g1[p], 0.25);
    expected.push_back(initial_values()[p].clone().add_(c, -lr));
  }
  EXPECT_TRUE(all_equal(run.after_step[0], expected));
  // And in double precision, independently of the order of operations.
  for (size_t p = 0; p < g0.size(); ++p) {
    const at::Tensor exact = initial_values()[p].to(torch::kDouble) -
                             lr * (0.75 * g0[p].to(torch::kDouble) + 0.25 * g1[p].to(torch::kDouble));
    EXPECT_LT(loom::test::max_abs_diff(run.after_step[0][p].to(torch::kDouble), exact), 1e-6);
  }
  EXPECT_EQ(run.updates, 2);  // one per key
}

TEST(PsServerSync, WeightsAreNotSwappedOrAveraged) {
  // Distinguishes 0.75/0.25 from 0.5/0.5 and from swapped weights: the test can fail.
  const SyncRun run = run_sync(1, int64_t{4} << 20, sgd(0.5), 1);
  const auto swapped = reference_run(sgd(0.5), combined_gradients(1, {0.25, 0.75}));
  const auto averaged = reference_run(sgd(0.5), combined_gradients(1, {0.5, 0.5}));
  EXPECT_FALSE(all_close(run.after_step[0], swapped, 1e-3));
  EXPECT_FALSE(all_close(run.after_step[0], averaged, 1e-3));
  EXPECT_TRUE(all_equal(run.after_step[0], reference_run(sgd(0.5), combined_gradients(1, {0.75, 0.25}))));
}

TEST(PsServerSync, MomentumSgdMatchesLibtorchSgdOverThreeSteps) {
  const auto o = sgd(0.1, 0.9);
  const SyncRun run = run_sync(1, int64_t{4} << 20, o, 3);
  const auto grads = combined_gradients(3, {0.75, 0.25});
  for (int t = 0; t < 3; ++t) {
    EXPECT_TRUE(all_equal(run.after_step[t], reference_run(o, {grads.begin(), grads.begin() + t + 1})))
        << "after step " << t;
  }
  // Momentum matters here: plain SGD gives something else after step 3.
  EXPECT_FALSE(all_close(run.after_step[2], reference_run(sgd(0.1), grads), 1e-4));
  EXPECT_EQ(run.updates, 6);
}

TEST(PsServerSync, AdamMatchesLibtorchAdam) {
  const auto o = adam(0.01);
  const SyncRun run = run_sync(1, int64_t{4} << 20, o, 3);
  const auto grads = combined_gradients(3, {0.75, 0.25});
  for (int t = 0; t < 3; ++t) {
    EXPECT_TRUE(all_close(run.after_step[t], reference_run(o, {grads.begin(), grads.begin() + t + 1}), 1e-6))
        << "after step " << t;
  }
  EXPECT_FALSE(all_close(run.after_step[2], reference_run(sgd(0.01), grads), 1e-4));
}

TEST(PsServerSync, ParameterSplitOverTwoServersGivesTheUnsplitResult) {
  // 32-byte slices: "w" (24 floats) becomes 3 slices of 8, "b" (6 floats) stays whole.
  for (const auto& o : {sgd(0.1, 0.9), adam(0.01)}) {
    SCOPED_TRACE(optim::optimizer_name(o.kind));
    const SyncRun whole = run_sync(1, int64_t{4} << 20, o, 3);
    const SyncRun split = run_sync(2, 32, o, 3);
    ASSERT_EQ(split.plan.keys_of_param[0].size(), 3u);
    std::vector<int> servers_of_w;
    for (uint64_t key : split.plan.keys_of_param[0]) servers_of_w.push_back(split.plan.slices[key].server);
    EXPECT_NE(std::count(servers_of_w.begin(), servers_of_w.end(), 0), 0);
    EXPECT_NE(std::count(servers_of_w.begin(), servers_of_w.end(), 1), 0);
    for (int t = 0; t < 3; ++t) EXPECT_TRUE(all_equal(split.after_step[t], whole.after_step[t])) << t;
    EXPECT_EQ(split.updates, 4 * 3);
  }
}

TEST(PsServerSync, PushPullGivesExactlyThePushThenPullValues) {
  for (const auto& o : {sgd(0.1, 0.9), adam(0.01)}) {
    SCOPED_TRACE(optim::optimizer_name(o.kind));
    for (int servers : {1, 2}) {
      const int64_t slice_bytes = servers == 1 ? int64_t{4} << 20 : 32;
      const SyncRun split = run_sync(servers, slice_bytes, o, 3);
      const SyncRun fused = run_sync(servers, slice_bytes, o, 3, {0.75, 0.25}, /*fused=*/true);
      for (int t = 0; t < 3; ++t) EXPECT_TRUE(all_equal(fused.after_step[t], split.after_step[t])) << t;
      EXPECT_EQ(fused.updates, split.updates);
    }
  }
}

TEST(PsServerSync, PushPullOfStepCIsAnsweredWithTheValuesAfterStepC) {
  auto ctx = std::make_shared<ZmqContext>();
  ServerThread s(server_options(ctx, 2, Consistency::sync, sgd(0.1)));
  Worker w0(model_specs(), worker_options(ctx, {s.endpoint()}, 0));
  Worker w1(model_specs(), worker_options(ctx, {s.endpoint()}, 1));
  w0.init(initial_values());
  auto v0 = zeros_like_model(), v1 = zeros_like_model();
  w0.wait(w0.pull(v0, 0));
  w1.wait(w1.pull(v1, 0));
  const auto g0 = gradients(0, 0), g1 = gradients(0, 1);
  // Worker 0's request reaches the server before worker 1's push: its reply must wait
  // for the update (an early answer would carry the initial values).
  const auto q0 = w0.push_pull(g0, v0, 0.5, 0);
  w1.wait(w1.push(g1, 0.5, 0));
  w0.wait(q0);
  const auto expected = reference_run(sgd(0.1), {combine({g0, g1}, {0.5, 0.5})});
  EXPECT_TRUE(all_equal(v0, expected));
  EXPECT_FALSE(all_close(v0, initial_values(), 1e-4));
  EXPECT_EQ(s.server().updates(), 2);
  w0.done();
  w1.done();
  EXPECT_TRUE(s.finished_within(3s));
  EXPECT_NO_THROW(s.get());
}

TEST(PsServerSync, PullOfClockCWaitsForTheUpdateOfStepCMinusOne) {
  auto ctx = std::make_shared<ZmqContext>();
  ServerThread s(server_options(ctx, 2, Consistency::sync, sgd(0.1)));
  Worker w0(model_specs(), worker_options(ctx, {s.endpoint()}, 0));
  Worker w1(model_specs(), worker_options(ctx, {s.endpoint()}, 1));
  w0.init(initial_values());
  auto v0 = zeros_like_model(), v1 = zeros_like_model();
  w0.wait(w0.pull(v0, 0));
  w1.wait(w1.pull(v1, 0));
  const auto g0 = gradients(0, 0), g1 = gradients(0, 1);
  w0.wait(w0.push(g0, 0.5, 0));

  std::atomic<bool> answered{false};
  auto pulled = std::async(std::launch::async, [&] {
    w0.wait(w0.pull(v0, 1));
    answered = true;
  });
  EXPECT_EQ(pulled.wait_for(400ms), std::future_status::timeout) << "answered before worker 1 pushed";
  EXPECT_FALSE(answered);
  EXPECT_EQ(s.server().updates(), 0);
  EXPECT_TRUE(all_equal(v0, initial_values()));

  w1.wait(w1.push(g1, 0.5, 0));
  ASSERT_EQ(pulled.wait_for(3s), std::future_status::ready);
  pulled.get();
  EXPECT_TRUE(answered);
  EXPECT_EQ(s.server().updates(), 2);
  EXPECT_TRUE(all_equal(v0, reference_run(sgd(0.1), {combine({g0, g1}, {0.5, 0.5})})));
  // A pull of an older clock is answered at once, with the current values.
  w1.wait(w1.pull(v1, 0));
  EXPECT_TRUE(all_equal(v1, v0));
  w0.done();
  w1.done();
  EXPECT_TRUE(s.finished_within(3s));
  EXPECT_NO_THROW(s.get());
}

}  // namespace
}  // namespace loom::ps
