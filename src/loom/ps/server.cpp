// The server's message loop and routing. What it delegates: when a push becomes an
// update and when a pull is answered (consistency.h), which workers still count
// (liveness.h), and the checkpoint file (server_checkpoint.h).
#include "loom/ps/server.h"

#include <torch/torch.h>

#include <filesystem>
#include <unordered_map>
#include <vector>

#include "loom/core/error.h"
#include "loom/core/log.h"
#include "loom/ps/consistency.h"
#include "loom/ps/liveness.h"
#include "loom/ps/server_checkpoint.h"
#include "loom/ps/slot.h"
#include "loom/ps/tensor_payload.h"
#include "loom/ps/zmq_van.h"

namespace loom::ps {

namespace {

// A peer's bytes, safe to put in a log line: at most 40 characters, non-printable ones as '?'.
std::string printable(std::string_view bytes) {
  std::string s(bytes.substr(0, 40));
  for (char& c : s) {
    if (c < ' ' || c > '~') c = '?';
  }
  return bytes.size() > 40 ? s + "..." : s;
}

std::string shape_string(at::IntArrayRef shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// Why a worker's keys do not match a loaded checkpoint's (a key is a slice: shard_plan.h).
constexpr const char* kOtherLayout =
    "the checkpoint was written for other slices (another model, --servers or --ps-slice-mb; the default was 4 "
    "until server checkpoints recorded it, 1 since)";

ServerOptions checked(ServerOptions o) {
  LOOM_CHECK(o.num_workers >= 1, ConfigError, "parameter server: need at least 1 worker, got {}", o.num_workers);
  if (!o.clock) o.clock = std::chrono::steady_clock::now;
  return o;
}

}  // namespace

struct Server::Impl {
  explicit Impl(ServerOptions o)
      : options(checked(std::move(o))),
        rule(make_consistency_rule(
            {options.consistency, options.num_workers, options.staleness, options.timeout, options.clock, who()})),
        van(options.bind, options.van),
        workers(options.num_workers, options.dead_after, options.timeout, options.clock),
        pushes(options.num_workers, 0) {
    if (!options.load_path.empty()) load(options.load_path);
  }

  ServerOptions options;
  std::unique_ptr<ConsistencyRule> rule;
  ZmqServerVan van;
  Liveness workers;
  std::unordered_map<uint64_t, Slot> slots;
  std::atomic<bool> stop{false};
  std::atomic<int64_t> updates{0};
  std::vector<int64_t> pushes;  // accepted gradient pushes, per worker
  std::atomic<int64_t> refused{0};
  std::string loaded_from;  // the checkpoint this server started from ("" = none)

  std::string who() const { return fmt::format("parameter server {}", options.server_index); }

  // ---- replies ---------------------------------------------------------------
  void refuse(const Message& m, const std::string& reason) {
    ++refused;
    log::warn("{}: refused {} from worker {}: {}", who(), op_name(m.header.op), m.header.worker, reason);
    Header h;
    h.op = Op::error;
    h.key = m.header.key;
    h.seq = m.header.seq;
    van.send(m.peer, h, Payload::from_string(reason));
  }

  void ack(const Message& m, Op op) {
    Header h;
    h.op = op;
    h.key = m.header.key;
    h.seq = m.header.seq;
    van.send(m.peer, h);
  }

  void send_values(const std::string& peer, uint64_t key, uint64_t seq, Slot& slot) {
    Header h;
    h.op = Op::pull_reply;
    h.key = key;
    h.seq = seq;
    h.clock = slot.version;
    // Without a copy only when the rule guarantees the bytes stay as they are while
    // ZeroMQ sends them; otherwise a snapshot.
    const at::Tensor values = rule->values_stable_while_sent() ? slot.param.detach() : slot.param.detach().clone();
    van.send(peer, h, tensor_payload(values, h));
  }

  // ---- routing ---------------------------------------------------------------
  void handle(const Message& m) {
    const Header& h = m.header;
    if (h.worker >= workers.size()) {
      refuse(m, fmt::format("worker id {} is out of range: this job has {} workers", h.worker, workers.size()));
      return;
    }
    // It was only quiet (e.g. evaluating): it counts again.
    if (workers.heard_from(h.worker)) log::info("{}: worker {} is back", who(), h.worker);
    switch (h.op) {
      case Op::hello: log::debug("{}: worker {} connected", who(), h.worker); return;
      case Op::push: return (h.flags & kFlagInit) ? init(m) : push(m);
      case Op::pull: return pull(m);
      case Op::command: return command(m);
      default: refuse(m, fmt::format("a server does not accept {} messages", op_name(h.op)));
    }
  }

  Slot* find_slot(const Message& m) {
    auto it = slots.find(m.header.key);
    if (it == slots.end()) {
      refuse(m, fmt::format("unknown key {} (this server holds {} keys)", m.header.key, slots.size()));
      return nullptr;
    }
    return &it->second;
  }

  bool check_tensor(const Message& m, const Slot& slot) {
    const Header& h = m.header;
    if (h.dtype != DType::f32) {
      refuse(m, fmt::format("key {} holds f32 values, got {}", h.key, dtype_name(h.dtype)));
      return false;
    }
    const auto shape = header_shape(h);
    if (at::IntArrayRef(shape) != slot.param.sizes()) {
      refuse(m,
             fmt::format("key {} has shape {}, got {}", h.key, shape_string(slot.param.sizes()), shape_string(shape)));
      return false;
    }
    return true;
  }

  Slot& add_slot(uint64_t key, const at::Tensor& values) {
    Slot& slot = slots[key];
    slot.param = values.detach().clone().requires_grad_(true);
    slot.combined = at::zeros_like(values);
    slot.param.mutable_grad() = slot.combined;
    slot.optimizer = optim::make_optimizer({slot.param}, options.optimizer);
    rule->add_key(key, slot);
    return slot;
  }

  void init(const Message& m) {
    const Header& h = m.header;
    if (h.flags & kFlagPull) {
      refuse(m, fmt::format("key {}: an init push cannot also be a pull", h.key));
      return;
    }
    if (auto it = slots.find(h.key); it != slots.end()) {  // from a checkpoint, or a restarted worker 0: keep ours
      if (!loaded_from.empty() && h.dtype == DType::f32 &&
          at::IntArrayRef(header_shape(h)) != it->second.param.sizes()) {
        refuse(m, fmt::format("key {} has shape {} in {}, got {}: {}", h.key, shape_string(it->second.param.sizes()),
                              loaded_from, shape_string(header_shape(h)), kOtherLayout));
        return;
      }
      if (check_tensor(m, it->second)) ack(m, Op::push_ack);
      return;
    }
    if (!loaded_from.empty()) {  // the checkpoint has every key this server serves
      refuse(m, fmt::format("key {} is not in {} ({} keys): {}", h.key, loaded_from, slots.size(), kOtherLayout));
      return;
    }
    if (h.dtype != DType::f32) {
      refuse(m, fmt::format("key {}: only f32 parameters are served, got {}", h.key, dtype_name(h.dtype)));
      return;
    }
    at::Tensor values = at::empty(header_shape(h), at::kFloat);
    copy_payload(m.payload, values);
    add_slot(h.key, values);
    ack(m, Op::push_ack);
  }

  void push(const Message& m) {
    const Header& h = m.header;
    Slot* slot = find_slot(m);
    if (!slot || !check_tensor(m, *slot)) return;
    if (!(h.weight >= 0 && h.weight <= 1)) {
      refuse(m, fmt::format("push weight must be in [0, 1], got {}", h.weight));
      return;
    }
    const PushResult result =
        rule->push(h.key, *slot, h.worker, h.clock, h.weight, payload_as_float_tensor(m.payload, slot->param.sizes()));
    if (!result.refusal.empty()) {
      refuse(m, result.refusal);
      return;
    }
    ++pushes[h.worker];
    if (h.flags & kFlagPull) {  // the reply to the pull of the next step is the acknowledgement
      if (result.update) update(h.key, *slot);
      pull_or_park(m.peer, h.worker, h.key, h.seq, h.clock + 1, *slot);
      return;
    }
    const bool ack_first = rule->ack_before_update();
    if (ack_first) ack(m, Op::push_ack);
    if (result.update) update(h.key, *slot);
    if (!ack_first) ack(m, Op::push_ack);
  }

  // One optimizer step with slot.combined, then the pulls it makes ready.
  void update(uint64_t key, Slot& slot) {
    slot.optimizer->step();
    ++slot.version;
    ++updates;
    if (options.after_update) options.after_update(slot.version);
    answer_parked(key, slot);
  }

  void pull(const Message& m) {
    const Header& h = m.header;
    Slot* slot = find_slot(m);
    if (!slot) return;
    pull_or_park(m.peer, h.worker, h.key, h.seq, h.clock, *slot);
  }

  // Answers a pull of `key` at `clock` now when the rule allows it, else parks it.
  void pull_or_park(const std::string& peer, uint32_t worker, uint64_t key, uint64_t seq, int64_t clock, Slot& slot) {
    if (rule->ready(key, slot, clock, workers)) {
      send_values(peer, key, seq, slot);
    } else {
      slot.parked.push_back({peer, worker, seq, clock});
    }
  }

  void answer_parked(uint64_t key, Slot& slot) {
    auto& parked = slot.parked;
    for (size_t i = 0; i < parked.size();) {
      if (rule->ready(key, slot, parked[i].clock, workers)) {
        send_values(parked[i].peer, key, parked[i].seq, slot);
        parked[i] = std::move(parked.back());
        parked.pop_back();
      } else {
        ++i;
      }
    }
  }

  void answer_all_parked() {
    for (auto& [key, slot] : slots) answer_parked(key, slot);
  }

  // ---- commands: "done", "save NAME", "checkpoint NAME" -----------------------
  void command(const Message& m) {
    const std::string_view text = m.payload.bytes();
    if (text == "done") {
      workers.done(m.header.worker);
      ack(m, Op::command_ack);
      answer_all_parked();
      log::debug("{}: worker {} is done", who(), m.header.worker);
      return;
    }
    const bool is_save = text.substr(0, 5) == "save ";
    if (is_save || text.substr(0, 11) == "checkpoint ") {
      const std::string_view name = text.substr(is_save ? 5 : 11);
      const std::string_view verb = is_save ? "save" : "checkpoint";
      const std::string problem = checkpoint_name_problem(name);
      if (!problem.empty()) {
        refuse(m, fmt::format("{}: invalid checkpoint name '{}': {} (a server writes only under its own directory)",
                              verb, printable(name), problem));
        return;
      }
      const std::string& dir = is_save ? options.save_dir : options.checkpoint_dir;
      if (dir.empty()) {
        refuse(m, fmt::format("{}: {} has no {} directory (start it with {})", verb, who(),
                              is_save ? "save" : "checkpoint", is_save ? "--ps-save" : "--checkpoint-dir"));
        return;
      }
      try {
        save(is_save ? fmt::format("{}/{}.server{}", dir, name, options.server_index)
                     : fmt::format("{}/ps.server{}", make_checkpoint_subdir(dir, name), options.server_index));
      } catch (const Error& e) {
        refuse(m, e.what());
        return;
      }
      ack(m, Op::command_ack);
      return;
    }
    refuse(m, fmt::format("unknown command '{}'", printable(text)));
  }

  // <dir>/<name>, created when missing (a server on another machine than the workers).
  std::string make_checkpoint_subdir(const std::string& dir, std::string_view name) {
    const std::string sub = fmt::format("{}/{}", dir, name);
    std::error_code ec;
    std::filesystem::create_directories(sub, ec);
    LOOM_CHECK(!ec && std::filesystem::is_directory(sub), CheckpointError, "{}: cannot create {}: {}", who(), sub,
               ec ? ec.message() : "not a directory");
    return sub;
  }

  void save(const std::string& path) {
    const size_t keys = write_server_checkpoint(path, slots, options.slice_bytes);
    log::info("{}: saved {} keys to {}", who(), keys, path);
  }

  void load(const std::string& path) {
    try {
      read_server_checkpoint(path, options.slice_bytes,
                             [&](uint64_t key, const at::Tensor& values, int64_t version) -> Slot& {
                               Slot& slot = add_slot(key, values);
                               // A new run (--ps-load) keeps the values and optimizer state and counts steps
                               // from 0 again; a resumed run continues the saved clock.
                               if (options.resume_clock) slot.version = version;
                               return slot;
                             });
    } catch (const CheckpointError& e) {
      LOOM_THROW(CheckpointError, "{}: {}", who(), e.what());
    }
    loaded_from = path;
    log::info("{}: loaded {} keys from {}", who(), slots.size(), path);
  }

  // ---- the loop --------------------------------------------------------------
  bool waiting(size_t worker) const {
    for (const auto& [key, slot] : slots) {
      for (const ParkedPull& p : slot.parked) {
        if (p.worker == worker) return true;
      }
    }
    return false;
  }

  void check_liveness() {
    rule->check_progress();
    if (!rule->drops_silent_workers()) return;
    const auto dropped = workers.drop_silent([this](size_t w) { return waiting(w); });
    for (size_t w : dropped) {
      log::warn("{}: worker {} sent nothing for {} s: dropped, the other workers go on without it ({})", who(), w,
                options.dead_after.count() / 1000.0, rule->describe());
    }
    if (!dropped.empty()) answer_all_parked();
  }

  void run() {
    log::info("{}: serving {} workers at {} ({})", who(), workers.size(), van.endpoint(), rule->describe());
    while (!stop && !workers.finished()) {
      auto message = van.receive(std::chrono::milliseconds(200));
      if (message) {
        try {
          handle(*message);
        } catch (const CommError& e) {
          // The peer vanished between its request and our reply: it is its problem.
          log::warn("{}: cannot reply to worker {}: {}", who(), message->header.worker, e.what());
        }
      }
      check_liveness();
    }
  }
};

Server::Server(ServerOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Server::~Server() = default;
std::string Server::endpoint() const { return impl_->van.endpoint(); }
void Server::run() { impl_->run(); }
void Server::request_stop() { impl_->stop = true; }
int64_t Server::updates() const { return impl_->updates; }
std::vector<int64_t> Server::steps_pushed() const {
  std::vector<int64_t> steps;
  const int64_t keys = std::max<int64_t>(1, static_cast<int64_t>(impl_->slots.size()));
  for (int64_t p : impl_->pushes) steps.push_back(p / keys);
  return steps;
}
int64_t Server::rejected() const { return impl_->refused + impl_->van.rejected(); }

}  // namespace loom::ps
