// SignalWatcher: turns asynchronous signals into readable bytes on a descriptor (the
// self-pipe trick), so a poll() loop can wait for worker output, child exits (SIGCHLD)
// and SIGINT/SIGTERM at once.
//
// The handlers are process-wide, so at most one SignalWatcher may exist at a time (a
// second one throws LaunchError). The constructor installs handlers for `watched` and
// ignores `ignored`; the destructor restores exactly the previous dispositions. A watched
// signal that is already ignored (e.g. SIGHUP under nohup) stays ignored, except SIGCHLD,
// which is always watched (ignoring it would have the kernel reap children). Signals
// may be delivered to any thread; the handler only write()s one byte. Not thread-safe
// otherwise: use it from one thread.
#pragma once

#include <signal.h>

#include <utility>
#include <vector>

#include "loom/launch/unique_fd.h"

namespace loom::launch {

class SignalWatcher {
 public:
  SignalWatcher(std::vector<int> watched, std::vector<int> ignored = {});
  ~SignalWatcher();
  SignalWatcher(const SignalWatcher&) = delete;
  SignalWatcher& operator=(const SignalWatcher&) = delete;

  // Readable (POLLIN) when a watched signal has arrived since the last take().
  int fd() const { return read_end_.get(); }
  // The watched signals received since the last call, in arrival order (a signal that
  // arrived many times may be reported fewer times if the pipe filled up). Never blocks.
  std::vector<int> take();
  // The signals of `ignored` that were not already ignored before this watcher: a
  // child should get them back at SIG_DFL (see SpawnOptions::default_signals).
  const std::vector<int>& signals_to_reset_in_children() const { return reset_in_children_; }

 private:
  std::vector<std::pair<int, struct sigaction>> previous_;  // restored in reverse order
  std::vector<int> reset_in_children_;
  UniqueFd read_end_;
  UniqueFd write_end_;
};

}  // namespace loom::launch
