// ps::Worker: a training process's client of the parameter servers (ps-lite's KVWorker).
//
// The worker knows the model's tensors (names and shapes), cuts them into slices with
// the same ShardPlan every worker computes, and talks to each server over its own
// DEALER socket. push() and pull() only send requests and return a Handle; wait()
// collects the replies, so a pull of the next parameters overlaps whatever the caller
// does meanwhile:
//
//   ps::Worker w(specs, options);
//   if (rank == 0) w.init(params);          // initial values, once, before any pull
//   ... barrier across workers ...
//   auto h = w.pull(params, 0); w.wait(h);
//   for (step ...) {
//     forward/backward
//     auto p = w.push(grads, share, step);   // grads must not change until p completes
//     auto q = w.pull(params, step + 1);     // sync mode: answered after the update
//     w.wait(p); w.wait(q);                  // or both at once: w.wait(w.push_pull(grads, params, share, step))
//   }
//   w.done();
//
// Contract: tensors are contiguous float32, one per spec, in the specs' order. Sync
// mode: push step c only after the pull of step c has completed (the server sends its
// values without a copy, relying on it). Errors: a server's Op::error reply throws
// CommError naming the server, the operation, the key and the server's reason; no reply
// within the timeout throws TimeoutError naming the server and the operation.
//
// Thread-safety: none; use a Worker from one thread (its sockets are single-threaded).
#pragma once

#include <ATen/core/Tensor.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "loom/ps/shard_plan.h"
#include "loom/ps/van_options.h"

namespace loom::ps {

struct WorkerOptions {
  std::vector<std::string> servers;  // endpoints, by server index
  uint32_t worker_id = 0;
  // The largest slice (shard_plan.h); the servers' limits must come from the same value
  // (--ps-slice-mb): the worker's message limits are limits_for_slices(slice_bytes).
  int64_t slice_bytes = int64_t{1} << 20;  // --ps-slice-mb's default
  // Every wait on a server: the handshake, a send while its queue is full, a reply.
  std::chrono::milliseconds timeout{300000};
  // Token, CURVE key pair, ZeroMQ context. Its `timeout` and `limits` are not used: the
  // worker sets them from `timeout` and `slice_bytes` above.
  VanOptions van;
};

class Worker {
 public:
  // Connects to every server (handshake). Throws as ZmqClientVan does.
  Worker(std::vector<TensorSpec> tensors, WorkerOptions options);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // A pending push or pull. Cheap to copy; wait on it once with Worker::wait.
  struct Handle {
    uint64_t id = 0;
  };

  const ShardPlan& plan() const;
  const std::vector<TensorSpec>& tensors() const;

  // Worker 0, once: the initial value of every slice. Blocking. Keys a server already
  // holds (from a checkpoint) keep the server's values.
  void init(const std::vector<at::Tensor>& values);
  // Sends every slice of `grads` with this worker's weight (share of the global batch)
  // and clock (step).
  Handle push(const std::vector<at::Tensor>& grads, double weight, int64_t clock);
  // Requests every slice at clock `clock`; wait() writes them into `into`.
  Handle pull(const std::vector<at::Tensor>& into, int64_t clock);
  // push(grads, weight, clock) and pull(into, clock + 1) in one request per slice and one
  // reply (half the messages, and one wake-up per slice instead of two): what a training
  // step that waits for both should use. `grads` and `into` must not change until it
  // completes; a refused push is thrown by wait() as for push(), and then `into` holds
  // the next step's values only for the slices that were accepted.
  Handle push_pull(const std::vector<at::Tensor>& grads, const std::vector<at::Tensor>& into, double weight,
                   int64_t clock);
  // Blocks until every reply of `h` has arrived (handling others' replies meanwhile).
  void wait(Handle h);
  // Tells every server this worker is finished. Blocking.
  void done();
  // Asks every server to save its shard as `name` in the server's own save directory:
  // server i writes <its ServerOptions::save_dir>/<name>.server<i>. Blocking. `name` is a
  // file name, not a path (checkpoint_name_problem in server.h): ConfigError otherwise,
  // before anything is sent.
  void save(const std::string& name);
  // Asks every server to write its shard into the training checkpoint `name` (the step
  // directory's name, "step-00000120"): <its ServerOptions::checkpoint_dir>/<name>/
  // ps.server<i>. Blocking; `name` as for save().
  void checkpoint(const std::string& name);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace loom::ps
