// WorkerGroup: one attempt of a launch: starts this node's workers, relays their output
// and waits until they have all exited, or until a failure or a signal made it stop them.
// The restart policy lives above it, in launcher.cpp.
//
// Ownership: owns the worker processes and their output pipes; borrows the options and
// the SignalWatcher, which must outlive it. Destroying a group kills what still runs.
// Not thread-safe.
#pragma once

#include <chrono>
#include <memory>
#include <vector>

#include "loom/launch/exit_status.h"
#include "loom/launch/launch_options.h"
#include "loom/launch/signal_watcher.h"

namespace loom::launch {

struct AttemptResult {
  bool success = false;      // every worker exited 0
  int failed_rank = -1;      // global rank of the first failure, or -1
  ExitStatus failed_status;  // how it ended
  int received_signal = 0;   // SIGINT/SIGTERM/SIGHUP that stopped the attempt, or 0
};

class WorkerGroup {
 public:
  WorkerGroup(const LaunchOptions& options, SignalWatcher& signals, int restart_count, int master_port);
  ~WorkerGroup();
  WorkerGroup(const WorkerGroup&) = delete;
  WorkerGroup& operator=(const WorkerGroup&) = delete;

  // Spawns the workers (throws LaunchError if one cannot be started; those started are
  // killed) and supervises them to the end. Call once.
  AttemptResult run();

 private:
  struct Worker;
  void spawn_all();
  void stop_all(int signal);
  void kill_all();
  void handle_signals();
  void reap();
  void pump_output(int timeout_ms);
  bool all_reaped() const;
  bool any_output_open() const;

  const LaunchOptions& options_;
  SignalWatcher& signals_;
  int restart_count_;
  int master_port_;
  std::vector<std::unique_ptr<Worker>> workers_;
  AttemptResult result_;
  bool stopping_ = false;
  bool killed_ = false;
  std::chrono::steady_clock::time_point kill_at_;
};

}  // namespace loom::launch
