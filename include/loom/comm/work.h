// Work: a handle to an asynchronous communication operation (c10d's Work, wrapped).
//
// Contract: wait() blocks at most the operation's timeout; a failure or timeout on the
// communication thread is rethrown on the caller's thread as loom::CommError /
// loom::TimeoutError naming this rank, the operation and the group. A default-
// constructed Work is already complete. Not thread-safe: one waiter per handle.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

namespace loom::comm {

class Work {
 public:
  Work() = default;
  // Completes immediately; for operations that need no communication (world size 1).
  static Work done() { return Work(); }

  // Waits for completion; throws CommError / TimeoutError. Waiting again after success
  // returns at once; after a failure, every later wait() throws the same error again.
  void wait();
  bool completed() const;
  // Calls fn once the operation has finished (successfully or not), on the
  // communication thread, or right away on this thread if it already has. fn must be
  // quick and must not throw; it may run after wait() has returned. For timing.
  void on_completion(std::function<void()> fn);
  // For recv from any source: the rank that sent, after wait(); -1 otherwise.
  int source_rank() const;

  struct Impl;  // holds the c10d work (defined in work.cpp)
  explicit Work(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace loom::comm
