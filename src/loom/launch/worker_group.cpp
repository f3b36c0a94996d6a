#include "loom/launch/worker_group.h"

#include <poll.h>
#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <optional>

#include <fmt/format.h>

#include "loom/core/log.h"
#include "loom/launch/child_process.h"
#include "loom/launch/output_relay.h"
#include "loom/launch/worker_env.h"

namespace loom::launch {

namespace {
using Clock = std::chrono::steady_clock;
// Bounds of the loop (Note: together with stop_grace they bound every wait of a launch).
constexpr auto kPollInterval = std::chrono::milliseconds(100);
// After SIGKILL, how long to wait for the kernel to let the workers go.
constexpr auto kReapAfterKill = std::chrono::milliseconds(2000);
// After the last worker exited, how long to wait for its pipes to close (something it
// started may still hold them).
constexpr auto kDrainAfterExit = std::chrono::milliseconds(1000);

int millis_until(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::clamp<std::int64_t>(left.count() + 1, 0, kPollInterval.count()));
}
}  // namespace

struct WorkerGroup::Worker {
  int local_rank = 0;
  int rank = 0;
  std::optional<ChildProcess> process;
  std::vector<OutputRelay> relays;  // stdout and stderr, when prefixing
};

WorkerGroup::WorkerGroup(const LaunchOptions& options, SignalWatcher& signals, int restart_count, int master_port)
    : options_(options), signals_(signals), restart_count_(restart_count), master_port_(master_port) {}

WorkerGroup::~WorkerGroup() = default;  // each ChildProcess kills and reaps what still runs

void WorkerGroup::spawn_all() {
  const std::vector<std::string> base_env = current_environment();
  for (int local_rank = 0; local_rank < options_.nproc; ++local_rank) {
    auto worker = std::make_unique<Worker>();
    worker->local_rank = local_rank;
    worker->rank = options_.global_rank(local_rank);
    SpawnOptions spawn;
    spawn.argv = options_.command;
    spawn.env = merge_environment(base_env, worker_env(options_, {local_rank, master_port_, restart_count_}));
    spawn.capture_output = options_.prefix_output;
    spawn.default_signals = signals_.signals_to_reset_in_children();
    worker->process.emplace(ChildProcess::spawn(spawn));
    if (options_.prefix_output) {
      const std::string prefix = fmt::format("[{}]: ", worker->rank);
      worker->relays.emplace_back(worker->process->take_stdout(), options_.stdout_fd, prefix);
      worker->relays.emplace_back(worker->process->take_stderr(), options_.stderr_fd, prefix);
    }
    workers_.push_back(std::move(worker));
  }
}

AttemptResult WorkerGroup::run() {
  spawn_all();
  std::optional<Clock::time_point> give_up_at;
  while (true) {
    handle_signals();
    reap();
    if (all_reaped()) break;
    if (stopping_ && !killed_ && Clock::now() >= kill_at_) kill_all();
    if (killed_ && !give_up_at) give_up_at = Clock::now() + kReapAfterKill;
    if (give_up_at && Clock::now() >= *give_up_at) {
      log::warn("some workers did not exit {} ms after SIGKILL; leaving them behind", kReapAfterKill.count());
      break;
    }
    int timeout_ms = static_cast<int>(kPollInterval.count());
    if (stopping_ && !killed_) timeout_ms = millis_until(kill_at_);
    if (give_up_at) timeout_ms = millis_until(*give_up_at);
    pump_output(timeout_ms);
  }
  if (stopping_) {
    // What the workers started in their groups goes too, so nothing outlives a stop.
    for (const auto& worker : workers_) worker->process->signal_group(SIGKILL);
  }
  const auto drain_until = Clock::now() + kDrainAfterExit;
  while (any_output_open() && Clock::now() < drain_until) {
    const std::vector<int> signals = signals_.take();
    // The workers are done; a signal now only cuts the wait short.
    if (std::any_of(signals.begin(), signals.end(), [](int s) { return s != SIGCHLD; })) break;
    pump_output(millis_until(drain_until));
  }
  for (auto& worker : workers_) {
    for (auto& relay : worker->relays) relay.close();
  }

  result_.success = !stopping_ && std::all_of(workers_.begin(), workers_.end(), [this](const auto& w) {
    return (w->process->status() && w->process->status()->success()) ||
           (options_.may_fail && options_.may_fail(w->rank));
  });
  return result_;
}

void WorkerGroup::handle_signals() {
  for (int signal : signals_.take()) {
    if (signal == SIGCHLD) continue;  // reap() looks at every worker anyway
    if (!stopping_) {
      result_.received_signal = signal;
      stop_all(signal);  // forwarded as is: a worker may treat SIGINT unlike SIGTERM
    } else if (!killed_) {
      kill_all();  // a second signal: no more grace
    }
  }
}

void WorkerGroup::reap() {
  for (auto& worker : workers_) {
    if (worker->process->reaped()) continue;
    const std::optional<ExitStatus> status = worker->process->try_wait();
    if (!status) continue;
    // Its last words come before anything the launcher says about it.
    for (auto& relay : worker->relays) relay.drain();
    if (!status->success() && !stopping_ && options_.may_fail && options_.may_fail(worker->rank)) {
      log::warn("rank {} {}; the other ranks go on without it", worker->rank, status->describe());
      continue;
    }
    if (!status->success() && !stopping_) {
      result_.failed_rank = worker->rank;
      result_.failed_status = *status;
      stop_all(SIGTERM);
    }
  }
}

void WorkerGroup::stop_all(int signal) {
  stopping_ = true;
  kill_at_ = Clock::now() + options_.stop_grace;
  for (const auto& worker : workers_) {
    if (!worker->process->reaped()) worker->process->signal_group(signal);
  }
}

void WorkerGroup::kill_all() {
  killed_ = true;
  for (const auto& worker : workers_) {
    if (!worker->process->reaped()) worker->process->signal_group(SIGKILL);
  }
}

void WorkerGroup::pump_output(int timeout_ms) {
  std::vector<pollfd> fds;
  std::vector<OutputRelay*> relays;
  fds.push_back({signals_.fd(), POLLIN, 0});
  relays.push_back(nullptr);
  for (auto& worker : workers_) {
    for (auto& relay : worker->relays) {
      if (!relay.open()) continue;
      fds.push_back({relay.fd(), POLLIN, 0});
      relays.push_back(&relay);
    }
  }
  const int ready = ::poll(fds.data(), fds.size(), timeout_ms);
  if (ready <= 0) return;  // timeout, or EINTR: the caller loops
  for (std::size_t i = 1; i < fds.size(); ++i) {
    if (fds[i].revents != 0) relays[i]->pump();
  }
}

bool WorkerGroup::all_reaped() const {
  return std::all_of(workers_.begin(), workers_.end(), [](const auto& w) { return w->process->reaped(); });
}

bool WorkerGroup::any_output_open() const {
  for (const auto& worker : workers_) {
    for (const auto& relay : worker->relays) {
      if (relay.open()) return true;
    }
  }
  return false;
}

}  // namespace loom::launch
