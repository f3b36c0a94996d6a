// ChildProcess: one spawned program (fork + execve) in its own process group, with its
// stdout/stderr optionally captured through pipes. The launcher signals the whole group,
// so helpers a worker starts (`sh -c '...; sleep 60'`) stop with it.
//
// Ownership: a ChildProcess owns its pid until it is reaped. The destructor never
// throws and never hangs: a child still running is SIGKILLed (its group) and reaped for
// at most about one second (a process stuck in the kernel is left behind, as a zombie).
// Move-only. Not thread-safe.
//
// Spawning is fork-safe in a multi-threaded parent: everything the child needs (argv,
// envp, candidate paths) is prepared before fork(), and the child only makes
// async-signal-safe calls before execve().
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "loom/launch/exit_status.h"
#include "loom/launch/unique_fd.h"

namespace loom::launch {

struct SpawnOptions {
  // argv[0] is looked up in the PATH of `env` (the launcher's PATH when `env` has none)
  // unless it contains a '/'.
  std::vector<std::string> argv;
  // The complete environment of the child, as "NAME=value" strings.
  std::vector<std::string> env;
  // Pipes for stdout/stderr; otherwise the child inherits the parent's.
  bool capture_output = true;
  // Signals to reset to SIG_DFL in the child (e.g. SIGPIPE when the parent ignores it;
  // ignored signals otherwise stay ignored across exec). The signal mask is always cleared.
  std::vector<int> default_signals;
  // The child's working directory; "" keeps the parent's.
  std::string cwd;
};

class ChildProcess {
 public:
  // Starts the program. stdin is /dev/null. Throws LaunchError naming argv[0] when it
  // cannot be executed (not found, not executable, ...) or when fork/pipe fail.
  static ChildProcess spawn(const SpawnOptions& options);

  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess();

  pid_t pid() const { return pid_; }
  // The read ends of the captured streams; empty after being taken or without capture.
  UniqueFd take_stdout() { return std::move(stdout_); }
  UniqueFd take_stderr() { return std::move(stderr_); }

  // Sends `signal` to the child's process group (the child and what it started that
  // stayed in its group). Safe to call after the child was reaped: the group may
  // still hold the child's own children. Errors (no such group) are ignored.
  void signal_group(int signal) const noexcept;

  // Reaps the child if it has ended, without blocking. Returns its status once it has
  // ended (and on every later call); std::nullopt while it runs.
  std::optional<ExitStatus> try_wait();
  bool reaped() const { return status_.has_value(); }
  const std::optional<ExitStatus>& status() const { return status_; }

 private:
  ChildProcess() = default;
  void kill_and_reap() noexcept;

  pid_t pid_ = -1;
  UniqueFd stdout_;
  UniqueFd stderr_;
  std::optional<ExitStatus> status_;
};

}  // namespace loom::launch
