#include "loom/comm/work.h"

#include "loom/comm/c10d_impl.h"
#include "loom/core/error.h"
#include "loom/core/tsan.h"

namespace loom::comm {

void rethrow_as_comm_error(const std::string& what) {
  std::string cause;
  try {
    throw;
  } catch (const loom::Error&) {
    throw;
  } catch (const c10::Error& e) {
    cause = e.what_without_backtrace();
  } catch (const std::exception& e) {
    cause = e.what();
  }
  // c10d messages carry source paths in brackets; keep the first line only.
  const auto nl = cause.find('\n');
  if (nl != std::string::npos) cause = cause.substr(0, nl);
  const bool timed_out = cause.find("imed out") != std::string::npos || cause.find("imeout") != std::string::npos;
  if (timed_out) LOOM_THROW(TimeoutError, "{} timed out: {}", what, cause);
  LOOM_THROW(CommError, "{} failed: {}", what, cause);
}

struct Work::Continuation {
  Work first;
  std::function<void()> fn;  // emptied once run
  std::string what;          // "continuation of allreduce on group 'world'"
  bool done = false;
  std::exception_ptr error;  // rethrown by every wait() after a failure
};

Work Work::then(std::function<void()> fn) && {
  LOOM_CHECK(fn != nullptr, ConfigError, "Work::then needs a function");
  auto c = std::make_shared<Continuation>();
  c->what = impl_ ? "continuation of " + impl_->what : std::string("continuation of a communication");
  c->first = std::move(*this);
  c->fn = std::move(fn);
  Work next;
  next.continuation_ = std::move(c);
  return next;
}

void Work::wait() {
  if (continuation_) {
    Continuation& c = *continuation_;
    if (c.error) std::rethrow_exception(c.error);
    if (c.done) return;
    c.done = true;
    try {
      try {
        c.first.wait();
        auto fn = std::move(c.fn);
        c.fn = nullptr;
        fn();
      } catch (...) {
        rethrow_as_comm_error(c.what);
      }
    } catch (...) {
      c.error = std::current_exception();
      throw;
    }
    return;
  }
  if (!impl_) return;
  if (impl_->error) std::rethrow_exception(impl_->error);
  if (impl_->waited) return;
  try {
    impl_->work->wait(impl_->timeout);
    tsan::acquire(impl_->work.get());                                   // what the shared-memory engine wrote (ShmWork)
    if (impl_->callback_future) tsan::acquire(impl_->callback_future);  // what on_completion callbacks wrote
    impl_->source_rank = impl_->what.rfind("recv from any", 0) == 0 ? impl_->work->sourceRank() : -1;
  } catch (...) {
    impl_->waited = true;
    try {
      try {
        rethrow_as_comm_error(impl_->what);
      } catch (const TimeoutError& e) {
        if (!impl_->liveness) throw;
        // Name the silent peer: c10d's message does not.
        const std::string silent = impl_->liveness->silent(impl_->members);
        LOOM_THROW(TimeoutError, "{}; {}", e.what(),
                   silent.empty() ? "every other member is alive (slow, or blocked elsewhere)" : "silent: " + silent);
      }
    } catch (...) {
      impl_->error = std::current_exception();
      throw;
    }
  }
  impl_->waited = true;
}

bool Work::completed() const {
  if (continuation_) return continuation_->done || continuation_->first.completed();
  return !impl_ || impl_->waited || impl_->work->isCompleted();
}

void Work::on_completion(std::function<void()> fn) {
  if (continuation_ && !continuation_->done) {
    continuation_->first.on_completion(std::move(fn));
    return;
  }
  if (!impl_ || impl_->waited) {
    fn();
    return;
  }
  // The callback runs on the communication thread, ordered by libtorch's future (which
  // TSan cannot see): after this registration, and before wait() returns. It finds the
  // sync address in its argument, not in its captures: the captures live on the heap,
  // written before our release, and are read only after the callback's acquire.
  c10::ivalue::Future* future = impl_->work->getFuture().get();
  auto body = [fn = std::move(fn)](c10::ivalue::Future& f) {
    tsan::acquire(&f);
    fn();
    tsan::release(&f);
  };
  static_assert(sizeof(body) > 2 * sizeof(void*), "libstdc++'s std::function keeps up to 16 bytes inline");
  std::function<void(c10::ivalue::Future&)> callback = std::move(body);
  impl_->callback_future = future;
  tsan::release(future);
  future->addCallback(std::move(callback));
}

int Work::source_rank() const {
  if (continuation_) return continuation_->first.source_rank();
  return impl_ ? impl_->source_rank : -1;
}

}  // namespace loom::comm
