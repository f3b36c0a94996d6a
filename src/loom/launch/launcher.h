// The launcher: starts `nproc` local workers of a (possibly multi-node) job with
// torchrun's environment, relays their output, supervises them and restarts or stops
// them all on failure. It backs `loom run` and `loom train --nproc N`.
//
// Behaviour (contract, see DESIGN.md "Failure"):
// - When every worker exits 0, the job succeeded.
// - When a worker exits non-zero or is killed by a signal, the others are stopped
//   (SIGTERM to each worker's process group, SIGKILL after stop_grace). With restarts
//   left, all workers are started again with LOOM_RESTART_COUNT incremented; otherwise
//   the job failed, naming the first failed rank and its cause.
// - SIGINT/SIGTERM/SIGHUP to the launcher are forwarded to every worker's process group,
//   which is then stopped as above (a second signal SIGKILLs at once); no restart.
//   Signals the launcher was started with ignored (nohup) stay ignored.
// - Never hangs: every wait is bounded by stop_grace plus a few seconds once a stop began.
//
// Not reentrant: one launch at a time per process (it owns the SIGINT/SIGTERM/SIGHUP/
// SIGCHLD handlers while it runs, and ignores SIGPIPE). Call it from one thread.
#pragma once

#include <string>

#include "loom/launch/exit_status.h"
#include "loom/launch/launch_options.h"

namespace loom::launch {

struct LaunchResult {
  // What the launcher process should exit with: 0 on success, the failed worker's exit
  // code or 128 + its signal, or 128 + the signal the launcher received.
  int exit_code = 0;
  int failed_rank = -1;      // global rank of the failure that ended the job, or -1
  ExitStatus failed_status;  // how that worker ended
  int received_signal = 0;   // the signal that stopped the launcher, or 0
  int restarts = 0;          // restarts performed
  // One line, without the "loom: launch error: " lead, e.g. "rank 1 exited with code 3"
  // or "rank 0 was killed by signal 9 (SIGKILL) after 2 restarts"; "" on success.
  std::string message;

  bool success() const { return exit_code == 0; }
};

// Validates the options (ConfigError), launches and supervises until the job is done.
// Prints nothing about the outcome (restarts are logged as warnings). Throws
// LaunchError when a worker cannot be started at all (e.g. command not found); workers
// already started are then killed.
LaunchResult supervise(const LaunchOptions& options);

// supervise(), then prints the one failure line, "loom: launch error: <message>", via
// log::error_line. Returns LaunchResult::exit_code.
int run(const LaunchOptions& options);

}  // namespace loom::launch
