// ExitStatus: how a child process ended, as reported by waitpid(), in the words the
// launcher prints ("exited with code 3", "was killed by signal 9 (SIGKILL)") and as the
// exit code a parent process should pass on (the code, or 128 + signal). Value type.
#pragma once

#include <string>

namespace loom::launch {

struct ExitStatus {
  int code = 0;    // exit code when the process exited normally
  int signal = 0;  // the terminating signal, 0 when it exited normally

  // From the `status` of waitpid(); a process that was not terminated (stopped,
  // continued) is not representable and must not be passed here.
  static ExitStatus from_wait_status(int status);
  static ExitStatus exited(int code) { return {code, 0}; }
  static ExitStatus killed(int signal) { return {0, signal}; }

  bool success() const { return signal == 0 && code == 0; }
  // The shell's convention: `code` for a normal exit, 128 + signal otherwise.
  int exit_code() const { return signal != 0 ? 128 + signal : code; }
  // "exited with code 3" or "was killed by signal 9 (SIGKILL)".
  std::string describe() const;
};

bool operator==(const ExitStatus& a, const ExitStatus& b);

// "SIGKILL" for 9; "SIG<n>" (e.g. "SIG42") when the number has no name.
std::string signal_name(int signal);

}  // namespace loom::launch
