#include "loom/launch/exit_status.h"

#include <sys/wait.h>

#include <cstring>

#include <fmt/format.h>

namespace loom::launch {

ExitStatus ExitStatus::from_wait_status(int status) {
  if (WIFSIGNALED(status)) return killed(WTERMSIG(status));
  return exited(WEXITSTATUS(status));
}

std::string ExitStatus::describe() const {
  if (signal != 0) return fmt::format("was killed by signal {} ({})", signal, signal_name(signal));
  return fmt::format("exited with code {}", code);
}

bool operator==(const ExitStatus& a, const ExitStatus& b) { return a.code == b.code && a.signal == b.signal; }

std::string signal_name(int signal) {
  if (const char* abbrev = sigabbrev_np(signal)) return std::string("SIG") + abbrev;
  return fmt::format("SIG{}", signal);
}

}  // namespace loom::launch
