// ps::Worker on its own: the plan it computes, its client-side checks, handles, error
// and timeout reporting (a server that handshakes and then never answers, a server that
// is not running), init of keys a server already holds.
#include "loom/ps/worker.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <atomic>
#include <functional>
#include <thread>

#include "loom/core/error.h"
#include "loom/ps/server.h"
#include "loom/ps/zmq_van.h"
#include "loom/strategies/options.h"
#include "loom/train/train_config.h"
#include "unit/ps/ps_testing.h"

namespace loom::ps {
namespace {

using namespace loom::ps::testing;

// A ZmqServerVan that completes the handshake of `hellos` workers and then never calls
// receive again: requests queue up unanswered.
class SilentServer {
 public:
  SilentServer(const std::shared_ptr<ZmqContext>& context, int hellos = 1)
      : van_(unique_endpoint("silent"), options(context)), endpoint_(van_.endpoint()), thread_([this, hellos] {
          int seen = 0;
          while (!stop_ && seen < hellos) {
            auto m = van_.receive(20ms);
            if (m && m->header.op == Op::hello) ++seen;
          }
        }) {}
  ~SilentServer() {
    stop_ = true;
    thread_.join();
  }
  const std::string& endpoint() const { return endpoint_; }

 private:
  static VanOptions options(const std::shared_ptr<ZmqContext>& context) {
    VanOptions o;
    o.context = context;
    o.timeout = 3s;
    return o;
  }
  ZmqServerVan van_;
  std::string endpoint_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

template <typename E>
std::string expect_throws(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type: " << e.what();
    return "";
  }
  ADD_FAILURE() << "no exception";
  return "";
}

bool contains(const std::string& s, const std::string& needle) { return s.find(needle) != std::string::npos; }

TEST(PsWorkerTimeout, PullToAServerThatNeverAnswersThrowsTimeoutErrorNamingIt) {
  auto ctx = std::make_shared<ZmqContext>();
  SilentServer silent(ctx);
  WorkerOptions o = worker_options(ctx, {silent.endpoint()}, 0);
  o.timeout = 500ms;
  Worker w(model_specs(), o);
  auto into = zeros_like_model();
  const auto start = Clock::now();
  const std::string what = expect_throws<TimeoutError>([&] { w.wait(w.pull(into, 0)); });
  const auto ms = elapsed_ms(start);
  EXPECT_GE(ms, 450);
  EXPECT_LT(ms, 2500);
  EXPECT_TRUE(contains(what, "parameter server 0")) << what;
  EXPECT_TRUE(contains(what, silent.endpoint())) << what;
  EXPECT_TRUE(contains(what, "pull")) << what;
  EXPECT_TRUE(contains(what, "0.5 s")) << what;
  EXPECT_TRUE(contains(what, "parameter-server worker 0")) << what;
}

TEST(PsWorkerTimeout, NamesTheServerThatDidNotAnswerAmongSeveral) {
  // Server 0 is a real server, server 1 handshakes and then goes silent. Every request
  // to server 1 (pull of its keys, the "done" command) must time out naming server 1.
  auto ctx = std::make_shared<ZmqContext>();
  ServerThread good(server_options(ctx, 1));
  SilentServer silent(ctx);
  WorkerOptions o = worker_options(ctx, {good.endpoint(), silent.endpoint()}, 0, 32);
  o.timeout = 400ms;
  Worker w(model_specs(), o);
  // Keys of server 0 exist once initialised there; init itself waits for server 1 too.
  std::string what = expect_throws<TimeoutError>([&] { w.init(initial_values()); });
  EXPECT_TRUE(contains(what, "parameter server 1 (" + silent.endpoint() + ")")) << what;
  what = expect_throws<TimeoutError>([&] { w.done(); });
  EXPECT_TRUE(contains(what, "parameter server 1 (" + silent.endpoint() + ")")) << what;
  EXPECT_TRUE(contains(what, "command")) << what;
  EXPECT_TRUE(good.finished_within(3s)) << "server 0 got its done";
}

TEST(PsWorkerTimeout, AServerThatIsNotRunningFailsTheHandshakeNamingIt) {
  auto ctx = std::make_shared<ZmqContext>();
  Server idle(server_options(ctx, 1));  // bound, never run
  WorkerOptions o = worker_options(ctx, {idle.endpoint()}, 0);
  o.timeout = 400ms;  // the worker's one timeout: the handshake's too
  const auto start = Clock::now();
  const std::string what = expect_throws<TimeoutError>([&] { Worker w(model_specs(), o); });
  EXPECT_LT(elapsed_ms(start), 2500);
  EXPECT_TRUE(contains(what, idle.endpoint())) << what;
}

// The worker's message limits follow its slice size as the servers' do (they announce
// theirs at the handshake and refuse a worker whose limit is larger).
TEST(PsWorker, MessageLimitsFollowTheSliceSizeAsTheServersDo) {
  auto ctx = std::make_shared<ZmqContext>();
  const int64_t slice_bytes = int64_t{1} << 20;
  ServerOptions so = server_options(ctx, 1);
  so.van.limits = limits_for_slices(slice_bytes);  // as `loom ps-server --ps-slice-mb 1`
  ServerThread s(so);
  WorkerOptions o = worker_options(ctx, {s.endpoint()}, 0, slice_bytes);
  EXPECT_EQ(o.van.limits.max_payload_bytes, Limits{}.max_payload_bytes) << "nothing set by hand";
  std::unique_ptr<Worker> w;
  ASSERT_NO_THROW(w = std::make_unique<Worker>(model_specs(), o));
  w->init(initial_values());
  auto values = zeros_like_model();
  w->wait(w->pull(values, 0));
  EXPECT_TRUE(all_equal(values, initial_values()));
  w->done();
  EXPECT_TRUE(s.finished_within(3s));
}

// One default slice size: the CLI's (--ps-slice-mb 1), the strategy's and the worker's
// (docs/performance-ps.md: 1 MiB slices, not BytePS's 4 MiB).
TEST(PsWorker, DefaultSliceSizeIsTheCliDefault) {
  EXPECT_EQ(WorkerOptions{}.slice_bytes, int64_t{1} << 20);
  EXPECT_EQ(strategies::PsOptions{}.slice_bytes, WorkerOptions{}.slice_bytes);
  EXPECT_EQ(static_cast<int64_t>(train::TrainConfig{}.ps_slice_mb * (1 << 20)), WorkerOptions{}.slice_bytes);
}

TEST(PsWorker, PlanIsTheSharedShardPlan) {
  auto ctx = std::make_shared<ZmqContext>();
  ServerThread s0(server_options(ctx, 1)), s1(server_options(ctx, 1));
  Worker w(model_specs(), worker_options(ctx, {s0.endpoint(), s1.endpoint()}, 0, 32));
  const ShardPlan expected = plan_shards(model_specs(), 2, 32);
  ASSERT_EQ(w.plan().slices.size(), expected.slices.size());
  for (size_t k = 0; k < expected.slices.size(); ++k) {
    EXPECT_EQ(w.plan().slices[k].server, expected.slices[k].server);
    EXPECT_EQ(w.plan().slices[k].offset, expected.slices[k].offset);
    EXPECT_EQ(w.plan().slices[k].numel, expected.slices[k].numel);
  }
  EXPECT_EQ(w.plan().keys_of_param, expected.keys_of_param);
  EXPECT_EQ(w.tensors().size(), 2u);
  EXPECT_EQ(w.tensors()[0].name, "w");
  w.done();
}

TEST(PsWorker, RejectsTensorsThatDoNotMatchTheModel) {
  auto ctx = std::make_shared<ZmqContext>();
  ServerThread s(server_options(ctx, 1));
  Worker w(model_specs(), worker_options(ctx, {s.endpoint()}, 0));
  w.init(initial_values());
  auto v = initial_values();
  std::string what = expect_throws<ConfigError>([&] { w.pull({v[0]}, 0); });
  EXPECT_TRUE(contains(what, "1 tensors, the model has 2")) << what;
  what = expect_throws<ConfigError>([&] { w.push({v[0].to(torch::kDouble), v[1]}, 1.0, 0); });
  EXPECT_TRUE(contains(what, "'w'")) << what;
  what = expect_throws<ConfigError>([&] { w.push({v[0].t(), v[1]}, 1.0, 0); });  // not contiguous
  EXPECT_TRUE(contains(what, "contiguous")) << what;
  what = expect_throws<ConfigError>([&] { w.pull({v[0], torch::zeros({7})}, 0); });
  EXPECT_TRUE(contains(what, "'b'")) << what;
  // Only the second tensor is wrong: no slice of the first may have been pushed either
  // (sync mode would then refuse the corrected push of step 0 as a second one).
  const auto g = gradients(0, 0);
  what = expect_throws<ConfigError>([&] { w.push({g[0], torch::zeros({7})}, 1.0, 0); });
  EXPECT_TRUE(contains(what, "'b'")) << what;
  // Nothing was sent: the server still serves this worker normally.
  auto into = zeros_like_model();
  w.wait(w.pull(into, 0));
  EXPECT_TRUE(all_equal(into, initial_values()));
  w.wait(w.push(g, 1.0, 0));
  w.wait(w.pull(into, 1));
  EXPECT_TRUE(all_equal(into, reference_run({}, {g})));
  EXPECT_EQ(s.server().rejected(), 0);
  EXPECT_EQ(s.server().updates(), 2);
  w.done();
  EXPECT_TRUE(s.finished_within(3s));
}

TEST(PsWorker, HandlesCanBeWaitedInAnyOrderAndOnce) {
  auto ctx = std::make_shared<ZmqContext>();
  ServerThread s0(server_options(ctx, 1, Consistency::sync)), s1(server_options(ctx, 1, Consistency::sync));
  Worker w(model_specs(), worker_options(ctx, {s0.endpoint(), s1.endpoint()}, 0, 32));
  w.init(initial_values());
  auto v = zeros_like_model();
  w.wait(w.pull(v, 0));
  const auto g = gradients(0, 0);
  // Both requests in flight; the pull of clock 1 is answered only after the push.
  const auto push = w.push(g, 1.0, 0);
  const auto pull = w.pull(v, 1);
  w.wait(pull);  // the push's ack is handled meanwhile
  w.wait(push);
  w.wait(push);  // already complete: returns at once
  EXPECT_TRUE(all_equal(v, reference_run({}, {g})));
  w.done();
  EXPECT_TRUE(s0.finished_within(3s));
  EXPECT_TRUE(s1.finished_within(3s));
}

TEST(PsWorker, InitKeepsTheValuesOfKeysTheServerAlreadyHolds) {
  auto ctx = std::make_shared<ZmqContext>();
  ServerThread s(server_options(ctx, 1));
  {
    Worker first(model_specs(), worker_options(ctx, {s.endpoint()}, 0));
    first.init(initial_values());
  }
  Worker restarted(model_specs(), worker_options(ctx, {s.endpoint()}, 0));
  restarted.init(zeros_like_model());
  auto v = zeros_like_model();
  restarted.wait(restarted.pull(v, 0));
  EXPECT_TRUE(all_equal(v, initial_values()));
  // An init whose shape does not match the held key is refused.
  Worker other({{"w", {6, 4}}, {"b", {6}}}, worker_options(ctx, {s.endpoint()}, 0));
  const std::string what = expect_throws<CommError>([&] { other.init({torch::zeros({6, 4}), torch::zeros({6})}); });
  EXPECT_TRUE(contains(what, "shape [4, 6], got [6, 4]")) << what;
  restarted.done();
  EXPECT_TRUE(s.finished_within(3s));
}

TEST(PsWorker, AWorkerIdTheServerDoesNotKnowIsACommErrorNamingTheReason) {
  // The van acknowledges any hello (it does not know the job's size); the server then
  // refuses the worker. The Worker must report the server's reason, not a protocol error
  // about an unknown request.
  auto ctx = std::make_shared<ZmqContext>();
  ServerThread s(server_options(ctx, 2));
  Worker w0(model_specs(), worker_options(ctx, {s.endpoint()}, 0));
  w0.init(initial_values());
  Worker stranger(model_specs(), worker_options(ctx, {s.endpoint()}, 2));
  auto into = zeros_like_model();
  const std::string what = expect_throws<CommError>([&] { stranger.wait(stranger.pull(into, 0)); });
  EXPECT_TRUE(contains(what, "parameter server 0 (" + s.endpoint() + ")")) << what;
  EXPECT_TRUE(contains(what, "worker id 2 is out of range: this job has 2 workers")) << what;
  EXPECT_GE(s.server().rejected(), 1);
}

TEST(PsWorker, NeedsAtLeastOneServer) {
  WorkerOptions o;
  o.van.context = std::make_shared<ZmqContext>();
  EXPECT_THROW(Worker(model_specs(), o), ConfigError);
}

}  // namespace
}  // namespace loom::ps

namespace loom::ps {
namespace {

// A refusal belongs to the handle whose request was refused: waiting on another handle
// afterwards does not throw it, and the refused handle does.
TEST(WorkerErrors, ARefusalIsThrownByItsOwnHandleOnly) {
  auto ctx = std::make_shared<ZmqContext>();
  ServerThread s(server_options(ctx, 1));
  Worker w(model_specs(), worker_options(ctx, {s.endpoint()}, 0));
  w.init(initial_values());
  auto params = zeros_like_model();
  w.wait(w.pull(params, 0));
  const auto bad = w.push(gradients(0, 0), 1.0, 5);  // wrong step: every key refused
  const auto good = w.push(gradients(0, 0), 1.0, 0);
  const auto pulled = w.pull(params, 1);
  EXPECT_NO_THROW(w.wait(good));
  EXPECT_NO_THROW(w.wait(pulled));
  EXPECT_THROW(w.wait(bad), CommError);
  w.done();
  EXPECT_TRUE(s.finished_within(std::chrono::seconds(3)));
}

}  // namespace
}  // namespace loom::ps
