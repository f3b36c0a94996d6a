#include "loom/ps/liveness.h"

#include <utility>

namespace loom::ps {

Liveness::Liveness(int num_workers, std::chrono::milliseconds dead_after, std::chrono::milliseconds gone_after,
                   ServerClock clock)
    : workers_(static_cast<size_t>(num_workers)),
      dead_after_(dead_after),
      gone_after_(gone_after),
      clock_(clock ? std::move(clock) : ServerClock(std::chrono::steady_clock::now)) {
  const auto started = clock_();
  for (Worker& w : workers_) w.last_seen = started;
}

bool Liveness::heard_from(size_t worker) {
  Worker& w = workers_[worker];
  w.last_seen = clock_();
  const bool back = w.dropped;
  w.dropped = false;
  return back;
}

void Liveness::done(size_t worker) { workers_[worker].done = true; }

bool Liveness::counted(size_t worker) const { return !workers_[worker].done && !workers_[worker].dropped; }

std::vector<size_t> Liveness::drop_silent(const std::function<bool(size_t)>& waiting) {
  const auto now = clock_();
  std::vector<size_t> dropped;
  for (size_t i = 0; i < workers_.size(); ++i) {
    Worker& w = workers_[i];
    if (w.done || w.dropped || now - w.last_seen < dead_after_ || waiting(i)) continue;
    w.dropped = true;
    dropped.push_back(i);
  }
  return dropped;
}

bool Liveness::finished() const {
  const auto now = clock_();
  for (const Worker& w : workers_) {
    if (w.done) continue;
    if (!w.dropped || now - w.last_seen < gone_after_) return false;
  }
  return true;
}

}  // namespace loom::ps
