// ps::Server noticing silent workers, on a clock the tests advance (ServerOptions::clock):
// async and ssp drop a silent worker and go on without it, sync ends with an error
// naming the worker whose push is missing. Nothing here sleeps for the server to notice.
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

TEST(PsServerFaults, AsyncDropsASilentWorkerAndTheOtherGoesOn) {
  ManualClock clock;
  auto ctx = std::make_shared<ZmqContext>();
  ServerOptions so = server_options(ctx, 2, Consistency::async, sgd(0.1));
  so.dead_after = 30s;
  so.timeout = 100s;  // a dropped worker silent this long is gone: run() may return
  so.clock = clock.clock();
  ServerThread s(so);
  Worker w0(model_specs(), worker_options(ctx, {s.endpoint()}, 0));
  Worker silent(model_specs(), worker_options(ctx, {s.endpoint()}, 1));  // hello, then nothing
  w0.init(initial_values());
  auto v0 = zeros_like_model();
  std::vector<std::vector<at::Tensor>> applied;
  int steps = 0;
  for (; steps < 4; ++steps) {  // worker 0 speaks every 10 s of the server's clock, worker 1 never
    const auto g = gradients(steps, 0);
    w0.wait(w0.push(g, 0.5, steps));
    w0.wait(w0.pull(v0, steps + 1));
    applied.push_back(combine({g}, {0.5}));
    clock.advance(10s);
  }
  EXPECT_EQ(s.server().updates(), 2 * steps);
  EXPECT_TRUE(all_close(v0, reference_run(sgd(0.1), applied), 1e-6));
  EXPECT_FALSE(s.finished_within(0ms)) << "returned while worker 0 is still working";
  w0.done();
  // Worker 1 never said done: run() returns only because it was dropped (after 30 s) and
  // stayed silent for the whole timeout (100 s).
  clock.advance(59s);  // 99 s of silence
  EXPECT_FALSE(s.finished_within(300ms)) << "returned before worker 1 was silent for the timeout";
  clock.advance(2s);
  ASSERT_TRUE(s.finished_within(3s)) << "run() waits for the silent worker";
  EXPECT_NO_THROW(s.get());
  EXPECT_EQ(s.server().steps_pushed(), std::vector<int64_t>({steps, 0}));
}

TEST(PsServerFaults, SspDroppingASilentWorkerReleasesThePullsWaitingForIt) {
  ManualClock clock;
  auto ctx = std::make_shared<ZmqContext>();
  ServerOptions so = server_options(ctx, 2, Consistency::ssp, sgd(0.1));
  so.staleness = 0;
  so.dead_after = 30s;
  so.clock = clock.clock();
  ServerThread s(so);
  Worker w0(model_specs(), worker_options(ctx, {s.endpoint()}, 0));
  Worker w1(model_specs(), worker_options(ctx, {s.endpoint()}, 1));  // silent for a while
  w0.init(initial_values());
  const auto g = gradients(0, 0);
  w0.wait(w0.push(g, 0.5, 0));
  auto v0 = zeros_like_model();
  {
    // Waits for worker 1's step 0 until worker 1 is dropped.
    auto pulled = std::async(std::launch::async, [&] { w0.wait(w0.pull(v0, 1)); });
    clock.advance(29s);
    EXPECT_EQ(pulled.wait_for(300ms), std::future_status::timeout) << "released before worker 1 was dropped";
    clock.advance(2s);
    ASSERT_EQ(pulled.wait_for(3s), std::future_status::ready) << "not released by dropping worker 1";
    pulled.get();
  }
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
  ManualClock clock;
  auto ctx = std::make_shared<ZmqContext>();
  ServerOptions so = server_options(ctx, 3, Consistency::sync, sgd(0.1));
  so.timeout = 30s;
  so.clock = clock.clock();
  ServerThread s(so);
  Worker w0(model_specs(), worker_options(ctx, {s.endpoint()}, 0));
  Worker w1(model_specs(), worker_options(ctx, {s.endpoint()}, 1));
  Worker silent(model_specs(), worker_options(ctx, {s.endpoint()}, 2));
  w0.init(initial_values());
  w0.wait(w0.push(gradients(0, 0), 0.5, 0));
  w1.wait(w1.push(gradients(0, 1), 0.5, 0));
  clock.advance(29s);
  EXPECT_FALSE(s.finished_within(300ms)) << "ended before the step timeout";
  clock.advance(2s);
  ASSERT_TRUE(s.finished_within(3s)) << "run() did not end";
  try {
    s.get();
    ADD_FAILURE() << "run() returned without an error";
  } catch (const TimeoutError& e) {
    ADD_FAILURE() << "expected a CommError, not a timeout of the server's own: " << e.what();
  } catch (const CommError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("no push from worker 2 "), std::string::npos) << what;
    EXPECT_NE(what.find("step 0"), std::string::npos) << what;
    EXPECT_NE(what.find("within 30 s"), std::string::npos) << what;
    EXPECT_NE(what.find("sync mode"), std::string::npos) << what;
  }
}

}  // namespace
}  // namespace loom::ps
