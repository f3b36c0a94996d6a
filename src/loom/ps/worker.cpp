#include "loom/ps/worker.h"

#include <fmt/format.h>

#include <unordered_map>

#include "loom/core/error.h"
#include "loom/ps/server.h"
#include "loom/ps/tensor_payload.h"
#include "loom/ps/zmq_van.h"

namespace loom::ps {

namespace {

using Clock = std::chrono::steady_clock;

struct Request {
  uint64_t handle = 0;
  Op op = Op::push;
  bool then_pull = false;  // a push with kFlagPull: answered with the values of the next step
  uint64_t key = 0;
  at::Tensor into;  // pull, push with then_pull: where the reply's values go
};

// "push of key 3", "push+pull of key 3", "a command": what a request was, for errors.
std::string describe_request(const Request& r) {
  if (r.op == Op::command) return "a command";
  return fmt::format("{} of key {}", r.then_pull ? "push+pull" : op_name(r.op), r.key);
}

struct HandleState {
  int outstanding = 0;
  std::string error;  // the first refusal among its replies; thrown by wait()
};

}  // namespace

struct Worker::Impl {
  Impl(std::vector<TensorSpec> specs, WorkerOptions o) : options(std::move(o)), tensors(std::move(specs)) {
    LOOM_CHECK(!options.servers.empty(), ConfigError, "parameter-server worker: no server endpoints given");
    plan = plan_shards(tensors, static_cast<int>(options.servers.size()), options.slice_bytes);
    // One timeout for every wait on a server; no payload is larger than a slice.
    VanOptions van = options.van;
    van.timeout = options.timeout;
    van.limits = limits_for_slices(options.slice_bytes);
    for (const std::string& endpoint : options.servers) {
      vans.push_back(std::make_unique<ZmqClientVan>(endpoint, options.worker_id, van));
      van_ptrs.push_back(vans.back().get());
    }
  }

  WorkerOptions options;
  std::vector<TensorSpec> tensors;
  ShardPlan plan;
  std::vector<std::unique_ptr<ZmqClientVan>> vans;
  std::vector<ZmqClientVan*> van_ptrs;
  uint64_t next_seq = 1;
  uint64_t next_handle = 1;
  std::unordered_map<uint64_t, Request> requests;  // by seq
  std::unordered_map<uint64_t, HandleState> handles;

  std::string who() const { return fmt::format("parameter-server worker {}", options.worker_id); }

  // The slice of `t` (flattened) that key `k` covers, as the tensor that travels: the
  // parameter's own shape when it is one slice, else 1-D.
  at::Tensor slice_of(const at::Tensor& t, const Slice& s) const {
    const TensorSpec& spec = tensors[s.param];
    LOOM_CHECK(t.defined() && t.numel() == spec.numel() && t.scalar_type() == at::kFloat && t.is_contiguous(),
               ConfigError, "{}: tensor for '{}' must be contiguous float32 with {} elements", who(), spec.name,
               spec.numel());
    at::Tensor flat = t.detach().view({-1}).narrow(0, s.offset, s.numel);
    return plan.keys_of_param[s.param].size() == 1 ? flat.view(spec.shape) : flat;
  }

  void check_count(const std::vector<at::Tensor>& ts, const char* what) const {
    LOOM_CHECK(ts.size() == tensors.size(), ConfigError, "{}: {} has {} tensors, the model has {}", who(), what,
               ts.size(), tensors.size());
  }

  uint64_t new_handle() {
    const uint64_t id = next_handle++;
    handles[id] = {};
    return id;
  }

  void send(uint64_t handle, Header h, Payload payload, Request request) {
    h.seq = next_seq++;
    h.worker = options.worker_id;
    request.handle = handle;
    request.op = h.op;
    request.then_pull = (h.flags & kFlagPull) != 0;
    request.key = h.key;
    vans[plan.slices[h.key].server]->send(h, std::move(payload));
    requests.emplace(h.seq, std::move(request));
    ++handles[handle].outstanding;
  }

  // With `into` (kFlagPull in `flags`): each slice's reply is the next step's values.
  Handle push(const std::vector<at::Tensor>& grads, double weight, int64_t clock, uint32_t flags,
              const std::vector<at::Tensor>* into = nullptr) {
    check_count(grads, flags & kFlagInit ? "init" : "push");
    const std::vector<at::Tensor> parts = slices_of(grads);  // checks all before sending any
    std::vector<at::Tensor> into_parts;
    if (into) {
      check_count(*into, "push_pull's values");
      into_parts = slices_of(*into);
    }
    const uint64_t handle = new_handle();
    for (const Slice& s : plan.slices) {
      Header h;
      h.op = Op::push;
      h.key = s.key;
      h.clock = clock;
      h.weight = weight;
      h.flags = flags;
      Payload payload = tensor_payload(parts[s.key], h);
      Request r;
      if (into) r.into = into_parts[s.key];
      send(handle, h, std::move(payload), std::move(r));
    }
    return {handle};
  }

  Handle pull(const std::vector<at::Tensor>& into, int64_t clock) {
    check_count(into, "pull");
    const std::vector<at::Tensor> parts = slices_of(into);
    const uint64_t handle = new_handle();
    for (const Slice& s : plan.slices) {
      Header h;
      h.op = Op::pull;
      h.key = s.key;
      h.clock = clock;
      Request r;
      r.into = parts[s.key];
      send(handle, h, {}, std::move(r));
    }
    return {handle};
  }

  // Every slice of `ts`, by key. Throws (ConfigError) before anything is sent, so a bad
  // tensor never leaves a partial push on the servers (sync mode would count it).
  std::vector<at::Tensor> slices_of(const std::vector<at::Tensor>& ts) const {
    std::vector<at::Tensor> parts;
    parts.reserve(plan.slices.size());
    for (const Slice& s : plan.slices) parts.push_back(slice_of(ts[s.param], s));
    return parts;
  }

  Handle command(const std::string& text) {
    const uint64_t handle = new_handle();
    for (size_t server = 0; server < vans.size(); ++server) {
      Header h;
      h.op = Op::command;
      h.seq = next_seq++;
      h.worker = options.worker_id;
      vans[server]->send(h, Payload::from_string(text));
      Request r;
      r.handle = handle;
      r.op = Op::command;
      r.key = server;  // for commands: the server asked
      requests.emplace(h.seq, std::move(r));
      ++handles[handle].outstanding;
    }
    return {handle};
  }

  void dispatch(size_t server, Message& m) {
    auto it = requests.find(m.header.seq);
    // A refusal of no request of ours: the server refused this worker itself (its hello,
    // e.g. a worker id out of range). Name the server's reason, not the unknown seq.
    LOOM_CHECK(it != requests.end() || m.header.op != Op::error, CommError,
               "{}: parameter server {} ({}) refused this worker: {}", who(), server, vans[server]->endpoint(),
               std::string(m.payload.bytes()));
    LOOM_CHECK(it != requests.end(), ProtocolError, "{}: parameter server {} answered request {} that is not pending",
               who(), server, m.header.seq);
    Request r = std::move(it->second);
    requests.erase(it);
    --handles[r.handle].outstanding;
    if (m.header.op == Op::error) {
      // Recorded on its own handle, so a later wait() on another handle never throws it.
      std::string& error = handles[r.handle].error;
      const std::string what = describe_request(r);
      if (error.empty()) {
        error = fmt::format("{}: parameter server {} ({}) refused {}: {}", who(), server, vans[server]->endpoint(),
                            what, std::string(m.payload.bytes()));
      }
      return;
    }
    const Op expected = r.op == Op::pull || r.then_pull ? Op::pull_reply
                        : r.op == Op::push              ? Op::push_ack
                                                        : Op::command_ack;
    LOOM_CHECK(m.header.op == expected, ProtocolError, "{}: parameter server {} answered {} with {}", who(), server,
               describe_request(r), op_name(m.header.op));
    if (expected == Op::pull_reply) copy_payload(m.payload, r.into);
  }

  void wait(Handle h) {
    auto it = handles.find(h.id);
    if (it == handles.end()) return;
    const auto deadline = Clock::now() + options.timeout;
    while (handles[h.id].outstanding > 0) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (vans.size() == 1) {  // one server: wait inside the receive itself (no poll first)
        auto m = left.count() > 0 ? vans[0]->receive(left) : std::nullopt;
        if (!m) throw_timeout(h.id);
        dispatch(0, *m);
        continue;
      }
      const int ready = left.count() > 0 ? ZmqClientVan::poll_any(van_ptrs, left) : -1;
      if (ready < 0) throw_timeout(h.id);
      while (auto m = vans[ready]->receive(std::chrono::milliseconds(0))) dispatch(ready, *m);
    }
    const std::string error = std::move(handles[h.id].error);
    handles.erase(h.id);
    if (!error.empty()) LOOM_THROW(CommError, "{}", error);
  }

  [[noreturn]] void throw_timeout(uint64_t handle) {
    for (const auto& [seq, r] : requests) {
      if (r.handle != handle) continue;
      const int server = r.op == Op::command ? static_cast<int>(r.key) : plan.slices[r.key].server;
      const std::string what = describe_request(r);
      LOOM_THROW(TimeoutError, "{}: no reply from parameter server {} ({}) to {} within {} s", who(), server,
                 vans[server]->endpoint(), what, options.timeout.count() / 1000.0);
    }
    LOOM_THROW(TimeoutError, "{}: no reply from the parameter servers within {} s", who(),
               options.timeout.count() / 1000.0);
  }
};

Worker::Worker(std::vector<TensorSpec> tensors, WorkerOptions options)
    : impl_(std::make_unique<Impl>(std::move(tensors), std::move(options))) {}
Worker::~Worker() = default;
const ShardPlan& Worker::plan() const { return impl_->plan; }
const std::vector<TensorSpec>& Worker::tensors() const { return impl_->tensors; }

void Worker::init(const std::vector<at::Tensor>& values) {
  std::vector<at::Tensor> contiguous;
  for (const auto& v : values) contiguous.push_back(v.detach().contiguous());
  wait(impl_->push(contiguous, 0, 0, kFlagInit));
}

Worker::Handle Worker::push(const std::vector<at::Tensor>& grads, double weight, int64_t clock) {
  return impl_->push(grads, weight, clock, 0);
}

Worker::Handle Worker::pull(const std::vector<at::Tensor>& into, int64_t clock) { return impl_->pull(into, clock); }

Worker::Handle Worker::push_pull(const std::vector<at::Tensor>& grads, const std::vector<at::Tensor>& into,
                                 double weight, int64_t clock) {
  return impl_->push(grads, weight, clock, kFlagPull, &into);
}

void Worker::wait(Handle h) { impl_->wait(h); }

void Worker::done() { wait(impl_->command("done")); }

namespace {
void check_name(const char* what, const std::string& name) {
  const std::string problem = checkpoint_name_problem(name);
  LOOM_CHECK(problem.empty(), ConfigError,
             "parameter-server {}: '{}' is not a checkpoint name: {} (each server writes under its own directory)",
             what, name, problem);
}
}  // namespace

void Worker::save(const std::string& name) {
  check_name("save", name);
  wait(impl_->command("save " + name));
}

void Worker::checkpoint(const std::string& name) {
  check_name("checkpoint", name);
  wait(impl_->command("checkpoint " + name));
}

}  // namespace loom::ps
