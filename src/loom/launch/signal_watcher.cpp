#include "loom/launch/signal_watcher.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "loom/core/error.h"

namespace loom::launch {

namespace {

// The one piece of process-wide state the launcher needs: a signal handler can reach
// nothing else. Set while a SignalWatcher exists, -1 otherwise.
std::atomic<int> g_write_fd{-1};

extern "C" void on_signal(int signal) {
  const int saved_errno = errno;
  const int fd = g_write_fd.load(std::memory_order_relaxed);
  if (fd >= 0) {
    const unsigned char byte = static_cast<unsigned char>(signal);
    [[maybe_unused]] ssize_t n = ::write(fd, &byte, 1);  // a full pipe drops it: fine
  }
  errno = saved_errno;
}

}  // namespace

SignalWatcher::SignalWatcher(std::vector<int> watched, std::vector<int> ignored) {
  int fds[2];
  LOOM_CHECK(::pipe2(fds, O_CLOEXEC | O_NONBLOCK) == 0, LaunchError, "cannot watch signals: pipe: {}",
             std::strerror(errno));
  read_end_.reset(fds[0]);
  write_end_.reset(fds[1]);
  int expected = -1;
  LOOM_CHECK(g_write_fd.compare_exchange_strong(expected, write_end_.get()), LaunchError,
             "cannot watch signals: another launch is running in this process");

  for (int sig : watched) {
    struct sigaction current {};
    // A signal the process was started with ignored (nohup, `cmd &` in a script) stays
    // ignored. SIGCHLD is the exception: ignoring it would make the kernel reap children.
    if (sig != SIGCHLD && ::sigaction(sig, nullptr, &current) == 0 && current.sa_handler == SIG_IGN) continue;
    struct sigaction action {};
    action.sa_handler = on_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART | (sig == SIGCHLD ? SA_NOCLDSTOP : 0);
    struct sigaction previous {};
    if (::sigaction(sig, &action, &previous) == 0) previous_.emplace_back(sig, previous);
  }
  for (int sig : ignored) {
    struct sigaction action {};
    action.sa_handler = SIG_IGN;
    sigemptyset(&action.sa_mask);
    struct sigaction previous {};
    if (::sigaction(sig, &action, &previous) == 0) {
      previous_.emplace_back(sig, previous);
      if (previous.sa_handler != SIG_IGN) reset_in_children_.push_back(sig);
    }
  }
}

SignalWatcher::~SignalWatcher() {
  for (auto it = previous_.rbegin(); it != previous_.rend(); ++it) {
    ::sigaction(it->first, &it->second, nullptr);
  }
  g_write_fd.store(-1);
}

std::vector<int> SignalWatcher::take() {
  std::vector<int> signals;
  unsigned char buffer[64];
  for (;;) {
    const ssize_t n = ::read(read_end_.get(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    signals.insert(signals.end(), buffer, buffer + n);
  }
  return signals;
}

}  // namespace loom::launch
