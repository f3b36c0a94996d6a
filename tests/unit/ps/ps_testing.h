// Helpers for the ps/ server and worker tests: servers on their own thread over inproc://
// endpoints of one shared ZmqContext, a clock the tests advance, a small model,
// deterministic gradients, the single-process reference (libtorch's own optimizers
// applied to the full tensors), and checks of the servers' refusals.
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "loom/core/error.h"
#include "loom/ps/server.h"
#include "loom/ps/shard_plan.h"
#include "loom/ps/worker.h"
#include "loom/ps/zmq_van.h"
#include "support/tensor_compare.h"

namespace loom::ps::testing {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

inline int64_t elapsed_ms(Clock::time_point since) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - since).count();
}

// "inproc://ps-<test>-<n>": unique within the process.
inline std::string unique_endpoint(const std::string& tag = "") {
  static std::atomic<int> counter{0};
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = info ? std::string(info->test_suite_name()) + "." + info->name() : "none";
  for (char& c : name) {
    if (c == '/') c = '_';
  }
  return "inproc://ps-" + name + "-" + tag + "-" + std::to_string(counter++);
}

// A clock that moves only when the test says (ServerOptions::clock): liveness tests
// advance it instead of sleeping. Copies share one time; thread-safe.
class ManualClock {
 public:
  ServerClock clock() const {
    return [offset = offset_, start = start_] { return start + std::chrono::nanoseconds(offset->load()); };
  }
  void advance(std::chrono::nanoseconds d) { *offset_ += d.count(); }

 private:
  std::shared_ptr<std::atomic<int64_t>> offset_ = std::make_shared<std::atomic<int64_t>>(0);
  Clock::time_point start_ = Clock::now();
};

inline optim::OptimizerOptions sgd(double lr, double momentum = 0) {
  optim::OptimizerOptions o;
  o.kind = optim::OptimizerKind::sgd;
  o.lr = lr;
  o.momentum = momentum;
  return o;
}

inline optim::OptimizerOptions adam(double lr) {
  optim::OptimizerOptions o;
  o.kind = optim::OptimizerKind::adam;
  o.lr = lr;
  return o;
}

inline ServerOptions server_options(const std::shared_ptr<ZmqContext>& context, int num_workers,
                                    Consistency consistency = Consistency::sync,
                                    optim::OptimizerOptions optimizer = {}) {
  ServerOptions o;
  o.bind = unique_endpoint("server");
  o.num_workers = num_workers;
  o.consistency = consistency;
  o.optimizer = optimizer;
  o.timeout = 5s;
  o.dead_after = 5s;
  o.van.context = context;
  o.van.timeout = 3s;
  return o;
}

inline WorkerOptions worker_options(const std::shared_ptr<ZmqContext>& context, std::vector<std::string> servers,
                                    uint32_t worker_id, int64_t slice_bytes = int64_t{4} << 20) {
  WorkerOptions o;
  o.servers = std::move(servers);
  o.worker_id = worker_id;
  o.slice_bytes = slice_bytes;
  o.timeout = 3s;
  o.van.context = context;
  return o;
}

// A Server whose run() executes on its own thread. The destructor stops it and joins.
class ServerThread {
 public:
  explicit ServerThread(ServerOptions options)
      : server_(std::make_unique<Server>(std::move(options))),
        endpoint_(server_->endpoint()),
        result_(std::async(std::launch::async, [s = server_.get()] { s->run(); })) {}
  ~ServerThread() {
    server_->request_stop();
    if (result_.valid()) result_.wait();
  }
  ServerThread(const ServerThread&) = delete;
  ServerThread& operator=(const ServerThread&) = delete;

  Server& server() { return *server_; }
  const std::string& endpoint() const { return endpoint_; }

  // True when run() returned (or threw) within `timeout`.
  bool finished_within(std::chrono::milliseconds timeout) {
    return result_.wait_for(timeout) == std::future_status::ready;
  }
  // Waits for run() and rethrows what it threw.
  void get() { result_.get(); }

 private:
  std::unique_ptr<Server> server_;
  std::string endpoint_;
  std::future<void> result_;
};

// Two parameters: "w" [4, 6] and "b" [6].
inline std::vector<TensorSpec> model_specs() { return {{"w", {4, 6}}, {"b", {6}}}; }

inline std::vector<at::Tensor> initial_values() {
  return {torch::arange(24, torch::kFloat).reshape({4, 6}).mul(0.1).sub(1.0),
          torch::linspace(-0.5, 0.5, 6, torch::kFloat)};
}

inline std::vector<at::Tensor> zeros_like_model() {
  std::vector<at::Tensor> out;
  for (const auto& t : initial_values()) out.push_back(torch::zeros_like(t));
  return out;
}

// Deterministic, distinct per (step, worker) gradients.
inline std::vector<at::Tensor> gradients(int64_t step, int worker) {
  std::vector<at::Tensor> out;
  int p = 0;
  for (const auto& t : initial_values()) {
    const double phase = 0.37 * step + 1.3 * worker + 2.1 * p++;
    out.push_back(torch::arange(t.numel(), torch::kFloat).mul(0.7 + 0.2 * worker).add(phase).sin().reshape(t.sizes()));
  }
  return out;
}

// The server's weighted sum, computed with the same operations (worker order).
inline std::vector<at::Tensor> combine(const std::vector<std::vector<at::Tensor>>& per_worker,
                                       const std::vector<double>& weights) {
  std::vector<at::Tensor> out;
  for (size_t p = 0; p < per_worker[0].size(); ++p) {
    at::Tensor c = per_worker[0][p].mul(weights[0]);
    for (size_t w = 1; w < per_worker.size(); ++w) c.add_(per_worker[w][p], weights[w]);
    out.push_back(c);
  }
  return out;
}

// Single-process reference: libtorch's optimizer over the full tensors, fed `grads[t]`.
inline std::vector<at::Tensor> reference_run(const optim::OptimizerOptions& o,
                                             const std::vector<std::vector<at::Tensor>>& grads) {
  std::vector<at::Tensor> params;
  for (const auto& t : initial_values()) params.push_back(t.clone().requires_grad_(true));
  std::unique_ptr<torch::optim::Optimizer> opt;
  if (o.kind == optim::OptimizerKind::adam) {
    opt = std::make_unique<torch::optim::Adam>(
        params, torch::optim::AdamOptions(o.lr).betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(o.weight_decay));
  } else {
    opt = std::make_unique<torch::optim::SGD>(
        params, torch::optim::SGDOptions(o.lr).momentum(o.momentum).weight_decay(o.weight_decay));
  }
  for (const auto& g : grads) {
    for (size_t p = 0; p < params.size(); ++p) params[p].mutable_grad() = g[p].clone();
    opt->step();
  }
  std::vector<at::Tensor> out;
  for (const auto& p : params) out.push_back(p.detach().clone());
  return out;
}

// Bitwise equal (NaN never equals anything), and within `atol` (NaN-safe:
// support/tensor_compare.h).
inline ::testing::AssertionResult all_equal(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
  if (a.size() != b.size()) return ::testing::AssertionFailure() << a.size() << " vs " << b.size() << " tensors";
  for (size_t i = 0; i < a.size(); ++i) {
    if (!a[i].sizes().equals(b[i].sizes()) || !torch::equal(a[i], b[i])) {
      return ::testing::AssertionFailure()
             << "tensor " << i << " differs: max |diff| " << loom::test::max_abs_diff(a[i], b[i]);
    }
  }
  return ::testing::AssertionSuccess();
}

inline ::testing::AssertionResult all_close(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b,
                                            double atol) {
  if (a.size() != b.size()) return ::testing::AssertionFailure() << a.size() << " vs " << b.size() << " tensors";
  for (size_t i = 0; i < a.size(); ++i) {
    const double diff = loom::test::max_abs_diff(a[i], b[i]);
    if (!(diff <= atol)) return ::testing::AssertionFailure() << "tensor " << i << " max |diff| " << diff;
  }
  return ::testing::AssertionSuccess();
}

inline std::vector<at::Tensor> clone_all(const std::vector<at::Tensor>& ts) {
  std::vector<at::Tensor> out;
  for (const auto& t : ts) out.push_back(t.clone());
  return out;
}

// Polls (the server thread increments the counter before it sends the error).
inline void expect_rejected(Server& server, int64_t expected) {
  const auto start = Clock::now();
  while (server.rejected() < expected && elapsed_ms(start) < 2000) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(server.rejected(), expected);
}

// The reply to request `seq` on a raw ZmqClientVan (other replies are skipped).
inline Message reply_to(ZmqClientVan& van, uint64_t seq) {
  const auto start = Clock::now();
  while (elapsed_ms(start) < 3000) {
    auto m = van.receive(100ms);
    if (m && m->header.seq == seq) return std::move(*m);
  }
  ADD_FAILURE() << "no reply to request " << seq;
  return {};
}

// `fn` throws a CommError (not a timeout) whose message contains every needle.
inline void expect_comm_error(const std::function<void()>& fn, const std::vector<std::string>& needles) {
  try {
    fn();
    ADD_FAILURE() << "no CommError";
  } catch (const TimeoutError& e) {
    ADD_FAILURE() << "a timeout instead of the server's refusal: " << e.what();
  } catch (const CommError& e) {
    for (const auto& n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
  }
}

// A fresh directory for this test under gtest's temporary directory.
inline std::string temp_dir() {
  namespace fs = std::filesystem;
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

inline std::string message_of(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  }
  return "?";
}

}  // namespace loom::ps::testing
