// ps::Server driven by ps::Worker clients over inproc:// (one shared VanContext): the
// maths of sync mode against libtorch's own optimizers, the consistency rules (sync,
// async, ssp), bad requests, dead workers, and checkpoints. Servers run on their own
// thread (ServerThread); workers on the test thread unless a test needs one blocked.
#include "loom/ps/server.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <thread>

#include <unistd.h>

#include "loom/core/error.h"
#include "loom/ps/protocol.h"
#include "loom/ps/van.h"
#include "loom/ps/worker.h"
#include "unit/ps/ps_testing.h"

namespace loom::ps {
namespace {

using namespace loom::ps::testing;
namespace fs = std::filesystem;

optim::OptimizerOptions sgd(double lr, double momentum = 0) {
  optim::OptimizerOptions o;
  o.name = "sgd";
  o.lr = lr;
  o.momentum = momentum;
  return o;
}

optim::OptimizerOptions adam(double lr) {
  optim::OptimizerOptions o;
  o.name = "adam";
  o.lr = lr;
  return o;
}

std::vector<at::Tensor> clone_all(const std::vector<at::Tensor>& ts) {
  std::vector<at::Tensor> out;
  for (const auto& t : ts) out.push_back(t.clone());
  return out;
}

// Polls (the server thread increments the counter before it sends the error).
void expect_rejected(Server& server, int64_t expected) {
  const auto start = Clock::now();
  while (server.rejected() < expected && elapsed_ms(start) < 2000) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(server.rejected(), expected);
}

// ---- sync mode: the maths ------------------------------------------------------

struct SyncRun {
  std::vector<std::vector<at::Tensor>> after_step;  // worker 0's values after each step
  ShardPlan plan;
  int64_t updates = 0;
};

// Two workers (weights 0.75 / 0.25) over `servers` sync servers, `steps` steps of
// push(gradients(t, w)) + pull(t + 1). Checks that both workers always hold the same
// values and that every server returns once both are done.
SyncRun run_sync(int servers, int64_t slice_bytes, const optim::OptimizerOptions& o, int steps,
                 const std::vector<double>& weights = {0.75, 0.25}) {
  auto ctx = std::make_shared<VanContext>();
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
    const auto p0 = w0.push(g0, weights[0], t);
    const auto p1 = w1.push(g1, weights[1], t);
    const auto q0 = w0.pull(v0, t + 1);
    const auto q1 = w1.pull(v1, t + 1);
    w0.wait(p0);
    w0.wait(q0);
    w1.wait(p1);
    w1.wait(q1);
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
    SCOPED_TRACE(o.name);
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

TEST(PsServerSync, PullOfClockCWaitsForTheUpdateOfStepCMinusOne) {
  auto ctx = std::make_shared<VanContext>();
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

// ---- async and ssp -------------------------------------------------------------

TEST(PsServerAsync, EachPushIsAppliedOnArrivalScaledByItsWeight) {
  auto ctx = std::make_shared<VanContext>();
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

TEST(PsServerSsp, StalenessOneBlocksTheFastWorkerUntilTheSlowOneCatchesUp) {
  auto ctx = std::make_shared<VanContext>();
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

// ---- bad requests ----------------------------------------------------------------

// The reply to request `seq` on a raw ClientVan (other replies are skipped).
Message reply_to(ClientVan& van, uint64_t seq) {
  const auto start = Clock::now();
  while (elapsed_ms(start) < 3000) {
    auto m = van.receive(100ms);
    if (m && m->header.seq == seq) return std::move(*m);
  }
  ADD_FAILURE() << "no reply to request " << seq;
  return {};
}

void expect_comm_error(const std::function<void()>& fn, const std::vector<std::string>& needles) {
  try {
    fn();
    ADD_FAILURE() << "no CommError";
  } catch (const TimeoutError& e) {
    ADD_FAILURE() << "a timeout instead of the server's refusal: " << e.what();
  } catch (const CommError& e) {
    for (const auto& n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
  }
}

TEST(PsServerBadRequests, AreRefusedWithTheReasonAndTheServerKeepsServing) {
  auto ctx = std::make_shared<VanContext>();
  ServerThread s(server_options(ctx, 2, Consistency::sync, sgd(0.1)));
  const std::string ep = s.endpoint();
  const std::vector<TensorSpec> w_only = {{"w", {4, 6}}};  // key 0 alone: one request per op
  Worker w0(model_specs(), worker_options(ctx, {ep}, 0));
  w0.init(initial_values());
  auto v0 = zeros_like_model();
  w0.wait(w0.pull(v0, 0));
  VanOptions raw_options;
  raw_options.context = ctx;
  raw_options.timeout = 3s;
  int64_t rejected = 0;

  {  // unknown key: a worker whose model has a third tensor
    auto specs = model_specs();
    specs.push_back({"extra", {3}});
    Worker bad(specs, worker_options(ctx, {ep}, 1));
    auto into = zeros_like_model();
    into.push_back(torch::zeros({3}));
    expect_comm_error([&] { bad.wait(bad.pull(into, 0)); },
                      {"parameter server 0", ep, "pull of key 2", "unknown key 2"});
    expect_rejected(s.server(), ++rejected);
  }
  {  // wrong shape: [6, 4] for the [4, 6] key
    Worker bad({{"w", {6, 4}}}, worker_options(ctx, {ep}, 1));
    expect_comm_error(
        [&] {
          bad.wait(bad.push({torch::ones({6, 4})}, 0.25, 0));
        },
        {"push of key 0", "key 0 has shape [4, 6], got [6, 4]"});
    expect_rejected(s.server(), ++rejected);
  }
  {  // wrong dtype: f64 values, sent raw (the Worker only sends f32)
    ClientVan raw(ep, 1, raw_options);
    Header h;
    h.op = Op::push;
    h.key = 0;
    h.seq = 42;
    h.clock = 0;
    h.weight = 0.25;
    h.dtype = DType::f64;
    h.ndim = 2;
    h.shape[0] = 4;
    h.shape[1] = 6;
    raw.send(h, Payload::from_string(std::string(24 * 8, '\0')));
    const Message m = reply_to(raw, 42);
    EXPECT_EQ(m.header.op, Op::error);
    EXPECT_NE(std::string(m.payload.bytes()).find("f64"), std::string::npos) << m.payload.bytes();
    expect_rejected(s.server(), ++rejected);
  }
  {  // push for the wrong step (sync mode: the server is at step 0)
    Worker bad(w_only, worker_options(ctx, {ep}, 1));
    expect_comm_error([&] { bad.wait(bad.push({gradients(0, 1)[0]}, 0.25, 3)); }, {"push for step 3", "at step 0"});
    expect_rejected(s.server(), ++rejected);
  }
  {  // the same step twice: worker 0 pushes step 0, then (another socket of) worker 0 again
    w0.wait(w0.push(gradients(0, 0), 0.75, 0));
    Worker again(w_only, worker_options(ctx, {ep}, 0));
    expect_comm_error([&] { again.wait(again.push({gradients(0, 0)[0]}, 0.75, 0)); }, {"worker 0 pushed step 0 twice"});
    expect_rejected(s.server(), ++rejected);
  }
  {  // weight outside [0, 1]
    Worker bad(w_only, worker_options(ctx, {ep}, 1));
    expect_comm_error([&] { bad.wait(bad.push({gradients(0, 1)[0]}, 1.5, 0)); }, {"weight must be in [0, 1]", "1.5"});
    expect_rejected(s.server(), ++rejected);
    expect_comm_error([&] { bad.wait(bad.push({gradients(0, 1)[0]}, -0.25, 0)); }, {"weight must be in [0, 1]"});
    expect_rejected(s.server(), ++rejected);
  }
  {  // worker id out of range: its hello and its request are both refused
    ClientVan raw(ep, 7, raw_options);
    Header h;
    h.op = Op::pull;
    h.key = 0;
    h.seq = 5;
    raw.send(h);
    const Message m = reply_to(raw, 5);
    EXPECT_EQ(m.header.op, Op::error);
    EXPECT_NE(std::string(m.payload.bytes()).find("worker id 7 is out of range"), std::string::npos)
        << m.payload.bytes();
    rejected += 2;
    expect_rejected(s.server(), rejected);
  }
  {  // unknown command
    ClientVan raw(ep, 1, raw_options);
    Header h;
    h.op = Op::command;
    h.seq = 9;
    raw.send(h, Payload::from_string("frobnicate now"));
    const Message m = reply_to(raw, 9);
    EXPECT_EQ(m.header.op, Op::error);
    EXPECT_NE(std::string(m.payload.bytes()).find("unknown command 'frobnicate now'"), std::string::npos)
        << m.payload.bytes();
    expect_rejected(s.server(), ++rejected);
  }
  {  // an op a server never accepts
    ClientVan raw(ep, 1, raw_options);
    Header h;
    h.op = Op::pull_reply;
    h.seq = 11;
    raw.send(h);
    const Message m = reply_to(raw, 11);
    EXPECT_EQ(m.header.op, Op::error);
    EXPECT_NE(std::string(m.payload.bytes()).find("pull_reply"), std::string::npos) << m.payload.bytes();
    expect_rejected(s.server(), ++rejected);
  }

  // None of it counted: the well-behaved worker 1's step 0 completes the update.
  EXPECT_EQ(s.server().updates(), 0);
  Worker w1(model_specs(), worker_options(ctx, {ep}, 1));
  const auto g1 = gradients(0, 1);
  w1.wait(w1.push(g1, 0.25, 0));
  auto v1 = zeros_like_model();
  w0.wait(w0.pull(v0, 1));
  w1.wait(w1.pull(v1, 1));
  const auto expected = reference_run(sgd(0.1), {combine({gradients(0, 0), g1}, {0.75, 0.25})});
  EXPECT_TRUE(all_equal(v0, expected));
  EXPECT_TRUE(all_equal(v1, expected));
  w0.done();
  w1.done();
  EXPECT_TRUE(s.finished_within(3s));
  EXPECT_NO_THROW(s.get());
  EXPECT_EQ(s.server().rejected(), rejected);
  EXPECT_EQ(s.server().updates(), 2);
  EXPECT_EQ(s.server().steps_pushed(), std::vector<int64_t>({1, 1})) << "a refused push was counted";
}

// ---- dead workers ------------------------------------------------------------------

TEST(PsServerFaults, AsyncDropsASilentWorkerAndTheOtherGoesOn) {
  auto ctx = std::make_shared<VanContext>();
  ServerOptions so = server_options(ctx, 2, Consistency::async, sgd(0.1));
  so.dead_after = 300ms;
  so.timeout = 1000ms;  // a dropped worker silent this long is gone: run() may return
  ServerThread s(so);
  Worker w0(model_specs(), worker_options(ctx, {s.endpoint()}, 0));
  Worker silent(model_specs(), worker_options(ctx, {s.endpoint()}, 1));  // hello, then nothing
  const auto silent_since = Clock::now();
  w0.init(initial_values());
  auto v0 = zeros_like_model();
  std::vector<std::vector<at::Tensor>> applied;
  int steps = 0;
  while (elapsed_ms(silent_since) < 700) {  // worker 0 keeps talking (every ~50 ms)
    const auto g = gradients(steps, 0);
    w0.wait(w0.push(g, 0.5, steps));
    w0.wait(w0.pull(v0, steps + 1));
    applied.push_back(combine({g}, {0.5}));
    ++steps;
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(s.server().updates(), 2 * steps);
  EXPECT_TRUE(all_close(v0, reference_run(sgd(0.1), applied), 1e-6));
  EXPECT_FALSE(s.finished_within(0ms)) << "returned while worker 0 is still working";
  w0.done();
  // Worker 1 never said done: run() returns only because it was dropped (and stayed
  // silent for the timeout).
  ASSERT_TRUE(s.finished_within(3s)) << "run() waits for the silent worker";
  EXPECT_GE(elapsed_ms(silent_since), 900);
  EXPECT_NO_THROW(s.get());
  EXPECT_EQ(s.server().steps_pushed(), std::vector<int64_t>({steps, 0}));
}

TEST(PsServerFaults, SspDroppingASilentWorkerReleasesThePullsWaitingForIt) {
  auto ctx = std::make_shared<VanContext>();
  ServerOptions so = server_options(ctx, 2, Consistency::ssp, sgd(0.1));
  so.staleness = 0;
  so.dead_after = 400ms;
  ServerThread s(so);
  Worker w0(model_specs(), worker_options(ctx, {s.endpoint()}, 0));
  Worker w1(model_specs(), worker_options(ctx, {s.endpoint()}, 1));  // silent for a while
  w0.init(initial_values());
  const auto g = gradients(0, 0);
  w0.wait(w0.push(g, 0.5, 0));
  auto v0 = zeros_like_model();
  const auto start = Clock::now();
  w0.wait(w0.pull(v0, 1));  // waits for worker 1's step 0 until worker 1 is dropped
  EXPECT_GE(elapsed_ms(start), 200);
  EXPECT_TRUE(all_equal(v0, reference_run(sgd(0.1), {combine({g}, {0.5})})));

  // Worker 1 speaks again: it counts again, and holds worker 0 back again.
  auto v1 = zeros_like_model();
  w1.wait(w1.pull(v1, 0));
  EXPECT_TRUE(all_equal(v1, v0));
  const auto g2 = gradients(1, 0);
  w0.wait(w0.push(g2, 0.5, 1));
  std::atomic<bool> answered{false};
  auto pulled = std::async(std::launch::async, [&] {
    w0.wait(w0.pull(v0, 2));  // needs worker 1 at >= 2 steps
    answered = true;
  });
  EXPECT_EQ(pulled.wait_for(200ms), std::future_status::timeout) << "worker 1 no longer counted";
  const auto h0 = gradients(0, 1), h1 = gradients(1, 1);
  w1.wait(w1.push(h0, 0.5, 0));
  w1.wait(w1.push(h1, 0.5, 1));
  ASSERT_EQ(pulled.wait_for(3s), std::future_status::ready);
  pulled.get();
  EXPECT_TRUE(answered);
  EXPECT_TRUE(all_close(
      v0,
      reference_run(sgd(0.1), {combine({g}, {0.5}), combine({g2}, {0.5}), combine({h0}, {0.5}), combine({h1}, {0.5})}),
      1e-6));
  w0.done();
  w1.done();
  EXPECT_TRUE(s.finished_within(2s));
  EXPECT_NO_THROW(s.get());
}

TEST(PsServerFaults, SyncStepIncompleteBeyondTheTimeoutNamesTheMissingWorker) {
  auto ctx = std::make_shared<VanContext>();
  ServerOptions so = server_options(ctx, 3, Consistency::sync, sgd(0.1));
  so.timeout = 500ms;
  ServerThread s(so);
  Worker w0(model_specs(), worker_options(ctx, {s.endpoint()}, 0));
  Worker w1(model_specs(), worker_options(ctx, {s.endpoint()}, 1));
  Worker silent(model_specs(), worker_options(ctx, {s.endpoint()}, 2));
  w0.init(initial_values());
  const auto start = Clock::now();
  w0.wait(w0.push(gradients(0, 0), 0.5, 0));
  w1.wait(w1.push(gradients(0, 1), 0.5, 0));
  ASSERT_TRUE(s.finished_within(3s)) << "run() did not end";
  EXPECT_GE(elapsed_ms(start), 400);
  try {
    s.get();
    ADD_FAILURE() << "run() returned without an error";
  } catch (const TimeoutError& e) {
    ADD_FAILURE() << "expected a CommError, not a timeout of the server's own: " << e.what();
  } catch (const CommError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("no push from worker 2 "), std::string::npos) << what;
    EXPECT_NE(what.find("step 0"), std::string::npos) << what;
    EXPECT_NE(what.find("sync mode"), std::string::npos) << what;
  }
}

// ---- checkpoints -------------------------------------------------------------------

std::string temp_dir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = std::string(info->test_suite_name()) + "." + info->name();
  for (char& c : name) {
    if (c == '/') c = '_';
  }
  const fs::path dir = fs::path(::testing::TempDir()) / ("loom-ps-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

class PsServerCheckpoint : public ::testing::TestWithParam<std::string> {};

TEST_P(PsServerCheckpoint, LoadedServersContinueWithTheSameValuesAndOptimizerState) {
  const auto o = GetParam() == "adam" ? adam(0.01) : sgd(0.1, 0.9);
  const std::string dir = temp_dir();
  const std::string prefix = dir + "/ckpt";
  const int64_t slice_bytes = 32;  // "w": 3 slices, spread over both servers
  auto ctx = std::make_shared<VanContext>();
  std::vector<std::unique_ptr<ServerThread>> a;
  std::vector<std::string> a_endpoints;
  for (int i = 0; i < 2; ++i) {
    ServerOptions so = server_options(ctx, 1, Consistency::sync, o);
    so.server_index = i;
    so.save_dir = dir;
    a.push_back(std::make_unique<ServerThread>(so));
    a_endpoints.push_back(a.back()->endpoint());
  }
  Worker wa(model_specs(), worker_options(ctx, a_endpoints, 0, slice_bytes));
  wa.init(initial_values());
  auto va = zeros_like_model();
  wa.wait(wa.pull(va, 0));
  for (int t = 0; t < 2; ++t) {
    const auto g = gradients(t, 0);
    wa.wait(wa.push(g, 1.0, t));
    wa.wait(wa.pull(va, t + 1));
  }
  wa.save("ckpt");
  ASSERT_TRUE(fs::exists(prefix + ".server0"));
  ASSERT_TRUE(fs::exists(prefix + ".server1"));

  std::vector<std::unique_ptr<ServerThread>> b;
  std::vector<std::string> b_endpoints;
  for (int i = 0; i < 2; ++i) {
    ServerOptions so = server_options(ctx, 1, Consistency::sync, o);
    so.server_index = i;
    so.load_path = prefix + ".server" + std::to_string(i);
    b.push_back(std::make_unique<ServerThread>(so));
    b_endpoints.push_back(b.back()->endpoint());
  }
  Worker wb(model_specs(), worker_options(ctx, b_endpoints, 0, slice_bytes));
  wb.init(zeros_like_model());  // keys from the checkpoint keep their values
  auto vb = zeros_like_model();
  wb.wait(wb.pull(vb, 0));
  EXPECT_TRUE(all_equal(vb, va));

  // The next step is the same on both. A loaded shard starts a new run: its sync clock
  // starts again at 0 (values and optimizer state carry over), so wb pushes step 0.
  const auto g = gradients(2, 0);
  wa.wait(wa.push(g, 1.0, 2));
  wa.wait(wa.pull(va, 3));
  wb.wait(wb.push(g, 1.0, 0));
  wb.wait(wb.pull(vb, 1));
  EXPECT_TRUE(all_equal(vb, va));
  std::vector<std::vector<at::Tensor>> grads;
  for (int t = 0; t < 3; ++t) grads.push_back(gradients(t, 0));
  EXPECT_TRUE(all_close(va, reference_run(o, grads), 1e-6));
  // Without the optimizer state the third step differs (momentum / Adam's moments).
  auto fresh = reference_run(o, {grads[0], grads[1]});
  {
    std::vector<at::Tensor> params;
    for (const auto& t : fresh) params.push_back(t.clone().requires_grad_(true));
    auto opt = optim::make_optimizer(params, o);
    for (size_t p = 0; p < params.size(); ++p) params[p].mutable_grad() = grads[2][p].clone();
    opt->step();
    for (size_t p = 0; p < params.size(); ++p) fresh[p] = params[p].detach();
  }
  EXPECT_FALSE(all_close(vb, fresh, 1e-5));

  wa.done();
  wb.done();
  for (auto* group : {&a, &b}) {
    for (auto& s : *group) {
      EXPECT_TRUE(s->finished_within(3s));
      EXPECT_NO_THROW(s->get());
    }
  }

  // A truncated copy of a real checkpoint is refused, naming the file.
  const std::string truncated = dir + "/truncated.server0";
  {
    std::ifstream in(prefix + ".server0", std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::ofstream(truncated, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  }
  ServerOptions so = server_options(ctx, 1, Consistency::sync, o);
  so.load_path = truncated;
  try {
    Server server(so);
    ADD_FAILURE() << "a truncated checkpoint was loaded";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find(truncated), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Optimizers, PsServerCheckpoint, ::testing::Values("sgd", "adam"));

TEST(PsServerCheckpointErrors, GarbageOrMissingFileIsACheckpointErrorNamingThePath) {
  const std::string dir = temp_dir();
  auto ctx = std::make_shared<VanContext>();
  const std::string garbage = dir + "/garbage.server0";
  std::ofstream(garbage, std::ios::binary) << "this is not a checkpoint\n\x01\x02\x03";
  const std::string empty = dir + "/empty.server0";
  std::ofstream(empty, std::ios::binary).flush();
  const std::string missing = dir + "/missing.server0";
  for (const std::string& path : {garbage, empty, missing}) {
    ServerOptions so = server_options(ctx, 1);
    so.load_path = path;
    try {
      Server server(so);
      ADD_FAILURE() << "loaded " << path;
    } catch (const CheckpointError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(path), std::string::npos) << what;
      EXPECT_NE(what.find("parameter server 0"), std::string::npos) << what;
      EXPECT_EQ(what.find('\n'), std::string::npos) << "one line: " << what;
    } catch (const std::exception& e) {
      ADD_FAILURE() << path << ": not a CheckpointError: " << e.what();
    }
  }
  fs::remove_all(dir);
}

TEST(PsServerCheckpointErrors, SaveToAnUnwritableDirectoryIsRefusedNamingIt) {
  auto ctx = std::make_shared<VanContext>();
  ServerOptions so = server_options(ctx, 1);
  so.save_dir = "/nonexistent-loom-dir/sub";
  ServerThread s(so);
  Worker w(model_specs(), worker_options(ctx, {s.endpoint()}, 0));
  w.init(initial_values());
  expect_comm_error([&] { w.save("ckpt"); }, {"refused a command", "/nonexistent-loom-dir/sub/ckpt.server0"});
  EXPECT_EQ(s.server().rejected(), 1);
  w.done();
  EXPECT_TRUE(s.finished_within(3s));
}

TEST(PsServerCheckpointErrors, ServerWithoutADirectoryRefusesToSave) {
  auto ctx = std::make_shared<VanContext>();
  ServerThread s(server_options(ctx, 1));
  Worker w(model_specs(), worker_options(ctx, {s.endpoint()}, 0));
  w.init(initial_values());
  expect_comm_error([&] { w.save("ckpt"); }, {"parameter server 0 has no save directory", "--ps-save"});
  expect_comm_error([&] { w.checkpoint("step-00000001"); },
                    {"parameter server 0 has no checkpoint directory", "--checkpoint-dir"});
  EXPECT_EQ(s.server().rejected(), 2);
  w.done();
  EXPECT_TRUE(s.finished_within(3s));
}

// Files under `dir`, recursively, as paths relative to it.
std::vector<std::string> files_under(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) out.push_back(fs::relative(e.path(), dir).string());
  std::sort(out.begin(), out.end());
  return out;
}

// The server chooses where it writes: a message naming a path (absolute, or climbing
// out with "..") is refused, names the cause, and writes nothing anywhere.
TEST(PsServerCheckpointPaths, AMessageNamingAPathWritesNothingOutsideTheDirectory) {
  const std::string root = temp_dir();
  const std::string dir = root + "/server";  // the server's own directory
  const bool tmp_x_existed = fs::exists("/tmp/x"), tmp_x_server0_existed = fs::exists("/tmp/x.server0");
  fs::create_directories(dir + "/saves");
  fs::create_directories(dir + "/ckpts");
  auto ctx = std::make_shared<VanContext>();
  ServerOptions so = server_options(ctx, 1);
  so.save_dir = dir + "/saves";
  so.checkpoint_dir = dir + "/ckpts";
  ServerThread s(so);
  Worker w(model_specs(), worker_options(ctx, {s.endpoint()}, 0));
  w.init(initial_values());
  VanOptions raw_options;
  raw_options.context = ctx;
  raw_options.timeout = 3s;
  ClientVan raw(s.endpoint(), 0, raw_options);  // a peer that skips the Worker's own checks
  int64_t rejected = 0;
  uint64_t seq = 100;
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"/tmp/x", "contains '/'"}, {root + "/abs", "contains '/'"},
      {"../x", "contains '/'"},   {"../../x", "contains '/'"},
      {"..", "starts with '.'"},  {"x/../../y", "contains '/'"},
      {"a..b", "contains '..'"},  {".hidden", "starts with '.'"},
      {"", "is empty"},           {std::string("x\0y", 3), "byte 0x00"},
      {"x\ny", "byte 0x0a"},      {std::string(129, 'a'), "at most 128"},
  };
  for (const auto& [name, cause] : bad) {
    for (const std::string verb : {"save", "checkpoint"}) {
      Header h;
      h.op = Op::command;
      h.seq = ++seq;
      raw.send(h, Payload::from_string(verb + " " + name));
      const Message m = reply_to(raw, seq);
      EXPECT_EQ(m.header.op, Op::error) << verb << " " << name;
      const std::string why(m.payload.bytes());
      EXPECT_NE(why.find(verb + ": invalid checkpoint name"), std::string::npos) << why;
      EXPECT_NE(why.find(cause), std::string::npos) << why;
      EXPECT_EQ(why.find('\n'), std::string::npos) << "one line: " << why;
      expect_rejected(s.server(), ++rejected);
    }
    // The Worker refuses them before sending anything.
    EXPECT_THROW(w.save(name), ConfigError) << name;
    EXPECT_THROW(w.checkpoint(name), ConfigError) << name;
  }
  EXPECT_EQ(files_under(root), std::vector<std::string>({"server", "server/ckpts", "server/saves"}));
  EXPECT_EQ(fs::exists("/tmp/x"), tmp_x_existed);
  EXPECT_EQ(fs::exists("/tmp/x.server0"), tmp_x_server0_existed);

  // Good names land where the server says, under names it builds.
  w.save("model.v1");
  w.checkpoint("step-00000002");
  EXPECT_EQ(files_under(root), std::vector<std::string>({"server", "server/ckpts", "server/ckpts/step-00000002",
                                                         "server/ckpts/step-00000002/ps.server0", "server/saves",
                                                         "server/saves/model.v1.server0"}));
  w.done();
  EXPECT_TRUE(s.finished_within(3s));
  EXPECT_EQ(s.server().rejected(), rejected);
  fs::remove_all(root);
}

TEST(PsServerCheckpointPaths, SavePrefixSplitsIntoTheServersDirectoryAndAName) {
  EXPECT_EQ(split_save_prefix("out/run1").dir, "out");
  EXPECT_EQ(split_save_prefix("out/run1").name, "run1");
  EXPECT_EQ(split_save_prefix("/abs/dir/shard").dir, "/abs/dir");
  EXPECT_EQ(split_save_prefix("shard").dir, ".");
  EXPECT_EQ(split_save_prefix("shard").name, "shard");
  for (const std::string bad : {"out/", "out/..", "out/.x", "a b"}) {
    try {
      split_save_prefix(bad);
      ADD_FAILURE() << bad;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("--ps-save " + bad), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(checkpoint_name_problem("step-00000120"), "");
  EXPECT_EQ(checkpoint_name_problem("ckpt_1.v2+x"), "");
}

TEST(PsConsistency, ParseAndName) {
  for (auto c : {Consistency::sync, Consistency::async, Consistency::ssp}) {
    EXPECT_EQ(parse_consistency(consistency_name(c)), c);
  }
  EXPECT_THROW(parse_consistency("eventual"), ConfigError);
}

TEST(PsServerOptions, RejectsBadValues) {
  auto ctx = std::make_shared<VanContext>();
  ServerOptions no_workers = server_options(ctx, 0);
  EXPECT_THROW(Server{no_workers}, ConfigError);
  ServerOptions negative = server_options(ctx, 2, Consistency::ssp);
  negative.staleness = -1;
  EXPECT_THROW(Server{negative}, ConfigError);
}

}  // namespace
}  // namespace loom::ps
