// Test support: run a program as a child process and capture what it did: stdout,
// stderr, exit code or terminating signal, elapsed time, and whether it ran out of time.
//
//   loom::test::RunOptions options;
//   options.argv = {LOOM_BINARY, "run", "--nproc", "2", "--", "true"};
//   loom::test::RunResult r = loom::test::run(options);
//   EXPECT_TRUE(r.exited_with(0)) << r.describe();
//
// The child runs in its own process group, with stdin from /dev/null, an empty signal
// mask and SIGINT/SIGTERM/SIGHUP/SIGQUIT/SIGPIPE at their defaults. On timeout (or when
// a Process is destroyed early) the whole group is SIGKILLed and reaped, so a test never
// hangs on it and leaves nothing behind in that group. Independent of loom's own launcher
// on purpose: it is what the launcher's tests measure it with.
// Not thread-safe; one Process per thread.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <utility>
#include <vector>

namespace loom::test {

struct RunOptions {
  std::vector<std::string> argv;  // argv[0] is looked up in PATH unless it has a '/'
  // Set in the child on top of this process's environment (later entries win).
  std::vector<std::pair<std::string, std::string>> env;
  // Removed from the child's environment (e.g. RANK, so an outer launcher cannot leak in).
  std::vector<std::string> unset_env;
  std::chrono::milliseconds timeout{60'000};  // from start to exit
  std::string cwd;                            // "" keeps this process's
};

struct RunResult {
  std::string out;     // everything written to stdout
  std::string err;     // everything written to stderr
  int exit_code = -1;  // the exit code when it exited normally, else -1
  int signal = 0;      // the terminating signal (SIGKILL after a timeout), else 0
  bool timed_out = false;
  // Both streams reached end of file after the exit: nothing the process started still
  // held them (collection stops 2 s after the exit otherwise).
  bool output_closed = true;
  std::chrono::milliseconds elapsed{0};  // from start to exit

  bool exited_with(int code) const { return signal == 0 && !timed_out && exit_code == code; }
  std::vector<std::string> out_lines() const;
  std::vector<std::string> err_lines() const;
  // "exit code 3 after 120 ms" / "signal 9 (timed out) after 60000 ms", then the stderr:
  // for assertion messages.
  std::string describe() const;
};

class Process {
 public:
  // Starts the program. Throws std::runtime_error when it cannot be started.
  explicit Process(RunOptions options);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  // Sends `signal` to the process itself (not its group).
  void send_signal(int signal) const;
  // Collects output until stdout + stderr contain `needle` at least `count` times, the
  // process exits, or `timeout` passes. Returns whether the needle count was reached.
  bool wait_for_output(const std::string& needle, int count, std::chrono::milliseconds timeout);
  const std::string& out() const { return result_.out; }
  const std::string& err() const { return result_.err; }
  // Waits for the exit (killing the group at the timeout given in RunOptions), collects
  // the rest of the output, and returns everything. Call once.
  RunResult wait();

 private:
  void pump(int timeout_ms);
  bool try_reap();

  RunOptions options_;
  pid_t pid_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;
  bool reaped_ = false;
  std::chrono::steady_clock::time_point start_;
  RunResult result_;
};

// Process(options).wait().
RunResult run(RunOptions options);

// Whether `pid` names a live process (a zombie counts as gone).
bool process_alive(pid_t pid);
// Waits up to `timeout` for process_alive(pid) to become false; returns whether it did.
bool wait_until_gone(pid_t pid, std::chrono::milliseconds timeout);

}  // namespace loom::test
