// Work: a handle to an asynchronous communication operation (c10d's Work, wrapped), or
// to one followed by a local step (then()).
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

  // This operation followed by `fn`: the returned handle's wait() waits for this
  // operation and then runs fn once, on the waiting thread, so fn may use what the
  // operation wrote (e.g. cast a 16-bit result back into an fp32 buffer). If the
  // operation fails, fn never runs; if fn throws, that is the handle's error (a
  // loom::Error as it is, anything else as CommError). Either way every later wait()
  // throws the same error again. completed() and on_completion() refer to the operation
  // (fn runs only inside wait()). Consumes this handle:
  //   return group.allreduce(io).then([wire, out] { out.copy_(wire); });
  Work then(std::function<void()> fn) &&;

  struct Impl;  // holds the c10d work (comm/c10d_impl.h)
  explicit Work(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

 private:
  struct Continuation;  // then(): the first Work and the step after it (work.cpp)

  std::shared_ptr<Impl> impl_;                  // a c10d operation, or
  std::shared_ptr<Continuation> continuation_;  // an operation followed by a step; both null: complete
};

}  // namespace loom::comm
