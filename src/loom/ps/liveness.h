// Liveness: which of a server's workers it still waits for, measured on the server's
// clock (ServerOptions::clock, steady_clock unless a test sets one it advances).
//
// Every worker starts counted and "seen" when the server starts. heard_from() marks a
// message; done() marks the worker's "done" command. In async and ssp mode the server
// drops a worker that has sent nothing for `dead_after` while no request of its is
// waiting (drop_silent): it no longer holds anyone back, and it counts again when it
// speaks again (it was only busy, e.g. evaluating). The server is finished once every
// worker is done, or dropped and silent for the whole `gone_after` (it is gone, not busy).
//
// Thread-safety: none; used by the server's serving thread only.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <vector>

#include "loom/ps/server.h"

namespace loom::ps {

class Liveness {
 public:
  Liveness(int num_workers, std::chrono::milliseconds dead_after, std::chrono::milliseconds gone_after,
           ServerClock clock);

  size_t size() const { return workers_.size(); }
  std::chrono::steady_clock::time_point now() const { return clock_(); }

  // A message from `worker` (< size()). True when it had been dropped: it is back.
  bool heard_from(size_t worker);
  void done(size_t worker);
  // Neither done nor dropped: bounded staleness waits for it.
  bool counted(size_t worker) const;

  // Drops every counted worker silent for dead_after, unless `waiting(worker)` (a request
  // of its is parked, so its silence is the server's doing). Returns the workers dropped.
  std::vector<size_t> drop_silent(const std::function<bool(size_t worker)>& waiting);

  // Every worker is done, or dropped and silent for gone_after.
  bool finished() const;

 private:
  struct Worker {
    bool done = false, dropped = false;
    std::chrono::steady_clock::time_point last_seen;
  };
  std::vector<Worker> workers_;
  std::chrono::milliseconds dead_after_, gone_after_;
  ServerClock clock_;
};

}  // namespace loom::ps
