// ps::Server: one parameter-server process's shard of the model, its optimizer, and the
// consistency rule that decides when a push becomes an update and when a pull is
// answered.
//
// Keys (slices, see shard_plan.h) come into existence with an init push (flag
// kFlagInit) from worker 0, carrying the initial values; a key that already exists
// (loaded from a checkpoint) keeps its values and ignores the init. The optimizer
// (SGD with momentum or Adam) is libtorch's own, one instance per slice, so the server
// runs exactly the maths of the single-process run on its part of each parameter.
//
// Consistency (ServerOptions::consistency):
//  * sync: for each key, the pushes of step c from all W workers are summed, each
//    weighted by its batch share (Header::weight), in worker order, and applied as one
//    update; the key's version becomes c + 1. A pull with clock c is answered once the
//    version is >= c. This is single-process training, computed across processes.
//  * async: every push is applied when it arrives, scaled by its weight (1/W with equal
//    shares); pulls are answered at once with the current values.
//  * ssp (bounded staleness s): pushes as in async; a pull with clock c is answered once
//    every live worker has pushed at least c - s steps of that key.
//
// A push may carry kFlagPull: then it is also the pull of the next step, answered as that
// pull would be, in one reply instead of two (ps-lite's ZPushPull).
//
// Workers: ids 0..W-1 say hello (the van's handshake), then push/pull, and say "done"
// (a command) at the end. In async and ssp mode a worker that has sent nothing for
// `dead_after` while no request of its is waiting is dropped (logged): no one waits for
// it any more (ssp), and it is counted again if it speaks again (it was only busy, e.g.
// evaluating). run() returns when every worker is done, or dropped and silent for the
// whole `timeout` (gone). In sync mode a step whose pushes are incomplete after
// `timeout` ends the server with a CommError naming the missing workers (the launcher
// then stops the job). These times are measured on ServerOptions::clock (steady_clock
// unless a test passes one it advances).
//
// Bad requests (unknown key, wrong shape or dtype, a worker id out of range, a push for
// the wrong step in sync mode, an unknown command) are answered with Op::error naming
// the problem, logged, and the server keeps serving everyone else; malformed messages
// never get here (the van rejects them).
//
// Checkpoints: a server writes only under the directories it was configured with, to
// names it builds itself; a message never chooses a path. The command "save NAME" writes
// <save_dir>/NAME.server<index>, and "checkpoint NAME" (NAME: a training checkpoint's
// step directory) writes <checkpoint_dir>/NAME/ps.server<index>, creating NAME/. NAME
// must pass checkpoint_name_problem() (no '/', no "..", no leading '.'); a bad NAME, or
// a command whose directory is not configured, is refused with a one-line reason and
// writes nothing. Each file holds every key's values, versions and optimizer state in a
// checked format (magic, version, CRC-32; docs/parameter-server.md), written atomically;
// ServerOptions::load_path reads one at start-up (a new run, or the same run resumed:
// ServerOptions::resume_clock), and a truncated or corrupt file is a CheckpointError
// naming it and the cause.
//
// Thread-safety: run() on one thread; request_stop() and endpoint() from any.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "loom/optim/optimizer.h"
#include "loom/ps/van_options.h"

namespace loom::ps {

// The consistency rule (see above; implemented in src/loom/ps/consistency.h).
enum class Consistency { sync, async, ssp };
// "sync" | "async" | "ssp"; ConfigError otherwise.
Consistency parse_consistency(const std::string& name);
std::string consistency_name(Consistency c);

// Why `name` cannot name a server checkpoint ("" when it can): it must be 1 to 128
// characters from [A-Za-z0-9._+-], not start with '.' and not contain "..", so that it
// stays one file name inside the server's own directory.
std::string checkpoint_name_problem(std::string_view name);

// --ps-save PREFIX as the server's directory and the name the workers send:
// "out/run1" -> {"out", "run1"}, "run1" -> {".", "run1"}. ConfigError naming --ps-save
// when the last part is not a valid name.
struct SavePrefix {
  std::string dir, name;
};
SavePrefix split_save_prefix(const std::string& prefix);

// The clock the server's liveness and sync-step timeouts are measured on.
using ServerClock = std::function<std::chrono::steady_clock::time_point()>;

// Header::flags used by the server and worker.
constexpr uint32_t kFlagInit = 1;  // push: initial values, not a gradient
// push: also a pull of clock + 1. The one reply is that pull's (Op::pull_reply, sent when
// the rule lets a pull of clock + 1 be answered), or Op::error when the push is refused;
// it stands for the push's acknowledgement too. Not with kFlagInit.
constexpr uint32_t kFlagPull = 2;

struct ServerOptions {
  std::string bind = "tcp://127.0.0.1:0";
  int server_index = 0;  // for logs and checkpoint names
  int num_workers = 1;
  Consistency consistency = Consistency::sync;
  int staleness = 0;  // ssp only
  optim::OptimizerOptions optimizer;
  std::chrono::milliseconds timeout{300000};
  std::chrono::milliseconds dead_after{30000};  // async / ssp: drop a silent worker
  VanOptions van;
  std::string load_path;  // checkpoint to start from ("" = none)
  // The job's largest slice (--ps-slice-mb; shard_plan.h), 0 = not known. A checkpoint
  // records it, and a load refuses one written with another: a checkpoint's keys are
  // the slices of that size.
  int64_t slice_bytes = 0;
  // The only places this server writes (see the file comment); "" refuses the command.
  std::string save_dir;        // "save NAME": <save_dir>/NAME.server<index> (--ps-save)
  std::string checkpoint_dir;  // "checkpoint NAME": <checkpoint_dir>/NAME/ps.server<index>
  // With load_path: false (--ps-load) starts a new run from the saved values, the sync
  // clock at 0; true (resuming a training checkpoint) continues the saved run, each
  // key at its saved version, so workers push the step where they left off.
  bool resume_clock = false;
  // Liveness and step timeouts (`timeout`, `dead_after`) are measured on this clock;
  // empty: std::chrono::steady_clock::now. Called on the serving thread.
  ServerClock clock;
  // Called on the serving thread after every update with the key's new version (tests
  // and drills: fault injection by step).
  std::function<void(int64_t version)> after_update;
};

class Server {
 public:
  explicit Server(ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // The bound endpoint (with the real port).
  std::string endpoint() const;
  // Serves until every worker is done or dropped, or request_stop(). Throws CommError
  // (sync mode: a step's pushes incomplete within the timeout) and CheckpointError.
  void run();
  void request_stop();

  // Counters, for tests and logs.
  int64_t updates() const;
  // Per worker: gradient pushes accepted / keys held, i.e. the steps it pushed (read
  // after run() returns).
  std::vector<int64_t> steps_pushed() const;
  int64_t rejected() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace loom::ps
