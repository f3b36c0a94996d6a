#include "loom/ps/server.h"

#include <torch/torch.h>

#include <cstring>
#include <filesystem>
#include <sstream>
#include <unordered_map>
#include <vector>

#include "loom/core/atomic_file.h"
#include "loom/core/error.h"
#include "loom/core/log.h"
#include "loom/ps/tensor_payload.h"

namespace loom::ps {

Consistency parse_consistency(const std::string& name) {
  if (name == "sync") return Consistency::sync;
  if (name == "async") return Consistency::async;
  if (name == "ssp") return Consistency::ssp;
  LOOM_THROW(ConfigError, "--consistency must be sync, async or ssp, got '{}'", name);
}

std::string consistency_name(Consistency c) {
  switch (c) {
    case Consistency::sync: return "sync";
    case Consistency::async: return "async";
    case Consistency::ssp: return "ssp";
  }
  return "?";
}

std::string checkpoint_name_problem(std::string_view name) {
  if (name.empty()) return "it is empty";
  if (name.size() > 128) return fmt::format("it has {} characters, at most 128 are allowed", name.size());
  for (const char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == '-' || c == '+';
    if (!ok) {
      return c == '/' ? "it contains '/'"
                      : fmt::format("it contains the byte 0x{:02x} (allowed: A-Z a-z 0-9 . _ + -)",
                                    static_cast<unsigned char>(c));
    }
  }
  if (name.front() == '.') return "it starts with '.'";
  if (name.find("..") != std::string_view::npos) return "it contains '..'";
  return "";
}

SavePrefix split_save_prefix(const std::string& prefix) {
  const std::filesystem::path path(prefix);
  SavePrefix out;
  out.name = path.filename().string();
  out.dir = path.has_parent_path() ? path.parent_path().string() : std::string(".");
  const std::string problem = checkpoint_name_problem(out.name);
  LOOM_CHECK(problem.empty(), ConfigError,
             "--ps-save {}: '{}' cannot name the servers' files: {} (the directory goes before the last '/')", prefix,
             out.name, problem);
  return out;
}

namespace {

using Clock = std::chrono::steady_clock;

// A peer's bytes, safe to put in a log line: at most 40 characters, non-printable ones as '?'.
std::string printable(std::string_view bytes) {
  std::string s(bytes.substr(0, 40));
  for (char& c : s) {
    if (c < ' ' || c > '~') c = '?';
  }
  return bytes.size() > 40 ? s + "..." : s;
}

struct ParkedPull {
  std::string peer;
  uint32_t worker = 0;
  uint64_t seq = 0;
  int64_t clock = 0;
};

// One key: a slice of one parameter, its optimizer, and what the consistency rule needs.
struct Slot {
  at::Tensor param;  // the server's values: a leaf that requires grad, for the optimizer
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  at::Tensor combined;  // the gradient applied by the next update (param.grad)
  int64_t version = 0;  // updates applied
  // sync: this version's pushes, per worker (views of the received messages)
  std::vector<at::Tensor> grads;
  std::vector<double> weights;
  std::vector<uint8_t> pushed;
  int pushed_count = 0;
  Clock::time_point first_push;
  // ssp: pushes received from each worker
  std::vector<int64_t> steps_done;
  std::vector<ParkedPull> parked;
};

struct WorkerState {
  bool hello = false, done = false, dropped = false;
  Clock::time_point last_seen;
  std::string peer;
};

std::string shape_string(at::IntArrayRef shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace

struct Server::Impl {
  explicit Impl(ServerOptions o) : options(std::move(o)), van(options.bind, options.van) {
    LOOM_CHECK(options.num_workers >= 1, ConfigError, "parameter server: need at least 1 worker, got {}",
               options.num_workers);
    LOOM_CHECK(options.staleness >= 0, ConfigError, "--staleness must be >= 0, got {}", options.staleness);
    workers.resize(options.num_workers);
    pushes.assign(options.num_workers, 0);
    started = Clock::now();
    for (auto& w : workers) w.last_seen = started;
    if (!options.load_path.empty()) load(options.load_path);
  }

  ServerOptions options;
  ServerVan van;
  std::unordered_map<uint64_t, Slot> slots;
  std::vector<WorkerState> workers;
  Clock::time_point started;
  std::atomic<bool> stop{false};
  std::atomic<int64_t> updates{0};
  std::vector<int64_t> pushes;  // accepted gradient pushes, per worker
  std::atomic<int64_t> refused{0};

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
    // In sync mode no update of this key can happen before every worker has pushed this
    // step, which a worker does only after receiving this reply: the bytes are stable
    // while ZeroMQ sends them, so they go without a copy. Otherwise, a snapshot.
    const at::Tensor values =
        options.consistency == Consistency::sync ? slot.param.detach() : slot.param.detach().clone();
    van.send(peer, h, tensor_payload(values, h));
  }

  // ---- requests --------------------------------------------------------------
  void handle(const Message& m) {
    const Header& h = m.header;
    if (h.worker >= workers.size()) {
      refuse(m, fmt::format("worker id {} is out of range: this job has {} workers", h.worker, workers.size()));
      return;
    }
    WorkerState& w = workers[h.worker];
    w.last_seen = Clock::now();
    if (w.dropped) {
      // It was only quiet (e.g. evaluating): count it again.
      w.dropped = false;
      log::info("{}: worker {} is back", who(), h.worker);
    }
    switch (h.op) {
      case Op::hello:
        w.hello = true;
        w.peer = m.peer;
        log::debug("{}: worker {} connected", who(), h.worker);
        return;
      case Op::push: return push(m);
      case Op::pull: return pull(m);
      case Op::command: return command(m, w);
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

  void init(const Message& m) {
    const Header& h = m.header;
    if (slots.count(h.key)) {  // from a checkpoint, or a restarted worker 0: keep ours
      Slot& slot = slots.at(h.key);
      if (!check_tensor(m, slot)) return;
      ack(m, Op::push_ack);
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

  Slot& add_slot(uint64_t key, const at::Tensor& values) {
    Slot& slot = slots[key];
    slot.param = values.detach().clone().requires_grad_(true);
    slot.combined = at::zeros_like(values);
    slot.param.mutable_grad() = slot.combined;
    slot.optimizer = optim::make_optimizer({slot.param}, options.optimizer);
    const size_t n = workers.size();
    slot.weights.assign(n, 0);
    slot.pushed.assign(n, 0);
    slot.steps_done.assign(n, 0);
    if (options.consistency == Consistency::sync) slot.grads.resize(n);  // this step's pushes, as received
    return slot;
  }

  void push(const Message& m) {
    const Header& h = m.header;
    if (h.flags & kFlagInit) return init(m);
    Slot* slot = find_slot(m);
    if (!slot || !check_tensor(m, *slot)) return;
    if (!(h.weight >= 0 && h.weight <= 1)) {
      refuse(m, fmt::format("push weight must be in [0, 1], got {}", h.weight));
      return;
    }
    if (options.consistency == Consistency::sync) {
      if (h.clock != slot->version) {
        refuse(m, fmt::format("key {}: push for step {} while the server is at step {} (sync mode)", h.key, h.clock,
                              slot->version));
        return;
      }
      if (slot->pushed[h.worker]) {
        refuse(m, fmt::format("key {}: worker {} pushed step {} twice", h.key, h.worker, h.clock));
        return;
      }
      ++pushes[h.worker];
      // Kept as it arrived (no copy when aligned) until the step's update.
      slot->grads[h.worker] = payload_as_float_tensor(m.payload, slot->param.sizes());
      slot->weights[h.worker] = h.weight;
      slot->pushed[h.worker] = 1;
      if (slot->pushed_count++ == 0) slot->first_push = Clock::now();
      ack(m, Op::push_ack);
      if (slot->pushed_count == static_cast<int>(workers.size())) apply_sync(h.key, *slot);
      return;
    }
    ++pushes[h.worker];
    at::mul_out(slot->combined, payload_as_float_tensor(m.payload, slot->param.sizes()), h.weight);
    step(*slot);
    slot->steps_done[h.worker] = std::max(slot->steps_done[h.worker], h.clock + 1);
    ack(m, Op::push_ack);
    answer_parked(h.key, *slot);
  }

  void apply_sync(uint64_t key, Slot& slot) {
    // Worker order, whatever order the pushes came in: deterministic sums.
    at::mul_out(slot.combined, slot.grads[0], slot.weights[0]);
    for (size_t w = 1; w < workers.size(); ++w) slot.combined.add_(slot.grads[w], slot.weights[w]);
    for (at::Tensor& g : slot.grads) g.reset();  // give the received messages back
    step(slot);
    std::fill(slot.pushed.begin(), slot.pushed.end(), 0);
    slot.pushed_count = 0;
    answer_parked(key, slot);
  }

  void step(Slot& slot) {
    slot.optimizer->step();
    ++slot.version;
    ++updates;
    if (options.after_update) options.after_update(slot.version);
  }

  bool ready(const Slot& slot, int64_t clock) const {
    switch (options.consistency) {
      case Consistency::sync: return slot.version >= clock;
      case Consistency::async: return true;
      case Consistency::ssp:
        for (size_t w = 0; w < workers.size(); ++w) {
          // Workers that are done or dropped no longer hold anyone back.
          if (!workers[w].dropped && !workers[w].done && slot.steps_done[w] < clock - options.staleness) {
            return false;
          }
        }
        return true;
    }
    return true;
  }

  void pull(const Message& m) {
    const Header& h = m.header;
    Slot* slot = find_slot(m);
    if (!slot) return;
    if (ready(*slot, h.clock)) {
      send_values(m.peer, h.key, h.seq, *slot);
    } else {
      slot->parked.push_back({m.peer, h.worker, h.seq, h.clock});
    }
  }

  void answer_parked(uint64_t key, Slot& slot) {
    auto& parked = slot.parked;
    for (size_t i = 0; i < parked.size();) {
      if (ready(slot, parked[i].clock)) {
        send_values(parked[i].peer, key, parked[i].seq, slot);
        parked[i] = std::move(parked.back());
        parked.pop_back();
      } else {
        ++i;
      }
    }
  }

  void command(const Message& m, WorkerState& w) {
    const std::string_view text = m.payload.bytes();
    if (text == "done") {
      w.done = true;
      ack(m, Op::command_ack);
      for (auto& [key, slot] : slots) answer_parked(key, slot);
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

  // ---- checkpoints -----------------------------------------------------------
  void save(const std::string& path) {
    torch::serialize::OutputArchive archive;
    std::vector<int64_t> keys;
    for (auto& [key, slot] : slots) keys.push_back(static_cast<int64_t>(key));
    std::sort(keys.begin(), keys.end());
    archive.write("keys", torch::tensor(keys, torch::kLong));
    for (int64_t key : keys) {
      Slot& slot = slots.at(key);
      archive.write(fmt::format("value.{}", key), slot.param.detach());
      archive.write(fmt::format("version.{}", key), torch::tensor({slot.version}, torch::kLong));
      torch::serialize::OutputArchive optim;
      slot.optimizer->save(optim);
      archive.write(fmt::format("optimizer.{}", key), optim);
    }
    std::ostringstream bytes;
    archive.save_to(bytes);
    write_file_atomic(path, bytes.str());
    log::info("{}: saved {} keys to {}", who(), keys.size(), path);
  }

  void load(const std::string& path) {
    torch::serialize::InputArchive archive;
    try {
      std::istringstream bytes(read_file(path));
      archive.load_from(bytes);
      at::Tensor keys;
      archive.read("keys", keys);
      for (int64_t i = 0; i < keys.numel(); ++i) {
        const int64_t key = keys[i].item<int64_t>();
        at::Tensor values, version;
        archive.read(fmt::format("value.{}", key), values);
        archive.read(fmt::format("version.{}", key), version);
        Slot& slot = add_slot(static_cast<uint64_t>(key), values);
        // A new run (--ps-load) keeps the values and optimizer state and counts steps
        // from 0 again; a resumed run continues the saved clock.
        if (options.resume_clock) slot.version = version.item<int64_t>();
        torch::serialize::InputArchive optim;
        archive.read(fmt::format("optimizer.{}", key), optim);
        slot.optimizer->load(optim);
      }
    } catch (const DataError& e) {  // read_file: missing or unreadable file
      LOOM_THROW(CheckpointError, "{}: {}", who(), e.what());
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      LOOM_THROW(CheckpointError, "{}: cannot read the checkpoint {}: {}", who(), path,
                 std::string(e.what()).substr(0, std::string(e.what()).find('\n')));
    }
    log::info("{}: loaded {} keys from {}", who(), slots.size(), path);
  }

  // ---- liveness --------------------------------------------------------------
  bool has_parked(size_t worker) const {
    for (const auto& [key, slot] : slots) {
      for (const ParkedPull& p : slot.parked) {
        if (p.worker == worker) return true;
      }
    }
    return false;
  }

  void check_liveness() {
    const auto now = Clock::now();
    if (options.consistency == Consistency::sync) {
      for (auto& [key, slot] : slots) {
        if (slot.pushed_count > 0 && now - slot.first_push > options.timeout) {
          std::string missing;
          for (size_t w = 0; w < workers.size(); ++w) {
            if (!slot.pushed[w]) missing += (missing.empty() ? "" : ", ") + std::to_string(w);
          }
          LOOM_THROW(CommError, "{}: step {} of key {}: no push from worker {} within {} s (sync mode)", who(),
                     slot.version, key, missing, options.timeout.count() / 1000.0);
        }
      }
      return;
    }
    for (size_t w = 0; w < workers.size(); ++w) {
      WorkerState& s = workers[w];
      if (s.done || s.dropped || now - s.last_seen < options.dead_after || has_parked(w)) continue;
      s.dropped = true;
      log::warn("{}: worker {} sent nothing for {} s: dropped, the other workers go on without it ({} mode)", who(), w,
                options.dead_after.count() / 1000.0, consistency_name(options.consistency));
      for (auto& [key, slot] : slots) answer_parked(key, slot);
    }
  }

  // Every worker is done, or was dropped and has stayed silent for the whole timeout
  // (it is gone, not just busy).
  bool finished() const {
    const auto now = Clock::now();
    for (const WorkerState& w : workers) {
      if (w.done) continue;
      if (!w.dropped || now - w.last_seen < options.timeout) return false;
    }
    return true;
  }

  void run() {
    log::info("{}: serving {} workers at {} ({} mode{})", who(), workers.size(), van.endpoint(),
              consistency_name(options.consistency),
              options.consistency == Consistency::ssp ? fmt::format(", staleness {}", options.staleness) : "");
    while (!stop && !finished()) {
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
