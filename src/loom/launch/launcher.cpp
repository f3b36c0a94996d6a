#include "loom/launch/launcher.h"

#include <signal.h>

#include <fmt/format.h>

#include "loom/core/log.h"
#include "loom/launch/free_port.h"
#include "loom/launch/signal_watcher.h"
#include "loom/launch/worker_group.h"

namespace loom::launch {

namespace {

LaunchResult stopped_by_signal(LaunchResult result, int signal) {
  result.received_signal = signal;
  result.exit_code = 128 + signal;
  result.message = fmt::format("received signal {} ({}); stopped the workers", signal, signal_name(signal));
  return result;
}

}  // namespace

LaunchResult supervise(const LaunchOptions& options) {
  validate(options);
  // SIGPIPE is ignored so that a closed stdout (`loom run ... | head`) cannot kill the
  // launcher and orphan its workers; the workers get it back at SIG_DFL.
  SignalWatcher signals({SIGINT, SIGTERM, SIGHUP, SIGCHLD}, {SIGPIPE});
  LaunchResult result;
  for (int attempt = 0;; ++attempt) {
    for (int signal : signals.take()) {
      if (signal != SIGCHLD) return stopped_by_signal(result, signal);  // between attempts
    }
    const int port = options.master_port != 0 ? options.master_port : pick_free_port();
    log::debug("starting ranks {}..{} of {} (attempt {}), master {}:{}", options.global_rank(0),
               options.global_rank(options.nproc - 1), options.world_size(), attempt, options.master_addr, port);
    const AttemptResult attempt_result = WorkerGroup(options, signals, attempt, port).run();
    result.restarts = attempt;
    if (attempt_result.success) return result;
    if (attempt_result.received_signal != 0) {
      return stopped_by_signal(result, attempt_result.received_signal);
    }

    result.failed_rank = attempt_result.failed_rank;
    result.failed_status = attempt_result.failed_status;
    const std::string cause = fmt::format("rank {} {}", result.failed_rank, result.failed_status.describe());
    if (attempt < options.max_restarts) {
      log::warn("{}; restarting all workers (restart {} of {})", cause, attempt + 1, options.max_restarts);
      continue;
    }
    result.exit_code = result.failed_status.exit_code();
    if (result.exit_code == 0) result.exit_code = 1;  // cannot happen for a failure; stay safe
    result.message =
        attempt > 0 ? fmt::format("{} after {} restart{}", cause, attempt, attempt == 1 ? "" : "s") : cause;
    return result;
  }
}

int run(const LaunchOptions& options) {
  const LaunchResult result = supervise(options);
  if (!result.success()) log::error_line("launch error: " + result.message);
  return result.exit_code;
}

}  // namespace loom::launch
