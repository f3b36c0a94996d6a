// Private to comm/: a c10d::Work that loom's own engines (the shared-memory collectives,
// the ring collectives) complete from their collective thread. Its future drives
// Work::on_completion; waiting uses no timeout of its own, because the engine bounds
// every operation by the group's timeout and names the rank it waited for.
#pragma once

#include <ATen/core/ivalue.h>
#include <torch/csrc/distributed/c10d/Work.hpp>

#include <exception>
#include <functional>

#include "loom/core/tsan.h"

namespace loom::comm {

class QueuedWork : public c10d::Work {
 public:
  QueuedWork() : future_(c10::make_intrusive<c10::ivalue::Future>(c10::NoneType::get())) {}
  // Called once by the engine's thread. Completion callbacks (on_completion) run here,
  // before waiters are released.
  void complete(std::exception_ptr error) {
    tsan::release(this);  // the results written so far; loom::comm::Work::wait acquires
    if (error) {
      future_->setError(error);
    } else {
      future_->markCompleted(c10::IValue());
    }
    finish(error);
  }
  c10::intrusive_ptr<c10::ivalue::Future> getFuture() override { return future_; }
  // Set once by the engine before the work is handed out: wait() calls it first, and it
  // may run queued operations on the waiting thread (ShmCollectives). It returns when
  // this work is complete or when it cannot help; wait() then blocks as usual.
  void set_helper(std::function<void(QueuedWork&)> helper) { helper_ = std::move(helper); }
  bool wait(std::chrono::milliseconds) override {
    if (helper_) helper_(*this);
    return c10d::Work::wait(::kNoTimeout);
  }

 private:
  c10::intrusive_ptr<c10::ivalue::Future> future_;
  std::function<void(QueuedWork&)> helper_;
};

}  // namespace loom::comm
