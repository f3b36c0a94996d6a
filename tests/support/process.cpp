#include "support/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace loom::test {

namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kOutputAfterExit = std::chrono::milliseconds(2000);
constexpr auto kReapAfterKill = std::chrono::milliseconds(5000);

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::vector<std::string> child_environment(const RunOptions& options) {
  std::vector<std::string> env;
  auto removed = [&](const std::string& entry) {
    const std::string name = entry.substr(0, entry.find('='));
    for (const auto& n : options.unset_env) {
      if (n == name) return true;
    }
    for (const auto& [n, v] : options.env) {
      if (n == name) return true;
    }
    return false;
  };
  for (char** e = environ; e && *e; ++e) {
    if (!removed(*e)) env.emplace_back(*e);
  }
  for (const auto& [name, value] : options.env) {
    // Later entries win: drop an earlier one with the same name.
    for (auto it = env.begin(); it != env.end(); ++it) {
      if (it->compare(0, name.size() + 1, name + "=") == 0) {
        env.erase(it);
        break;
      }
    }
    env.push_back(name + "=" + value);
  }
  return env;
}

std::vector<std::string> exec_candidates(const std::string& program, const std::vector<std::string>& env) {
  if (program.find('/') != std::string::npos) return {program};
  std::string path = "/usr/local/bin:/usr/bin:/bin";
  for (const auto& e : env) {
    if (e.rfind("PATH=", 0) == 0) path = e.substr(5);
  }
  std::vector<std::string> out;
  std::stringstream dirs(path);
  for (std::string dir; std::getline(dirs, dir, ':');) out.push_back((dir.empty() ? "." : dir) + "/" + program);
  return out;
}

int count_of(const std::string& haystack, const std::string& needle) {
  if (needle.empty()) return 0;
  int n = 0;
  for (std::size_t pos = haystack.find(needle); pos != std::string::npos;
       pos = haystack.find(needle, pos + needle.size())) {
    ++n;
  }
  return n;
}

int millis_until(Clock::time_point deadline, int cap) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::max<long long>(0, std::min<long long>(left + 1, cap)));
}

}  // namespace

std::vector<std::string> RunResult::out_lines() const { return split_lines(out); }
std::vector<std::string> RunResult::err_lines() const { return split_lines(err); }

std::string RunResult::describe() const {
  std::ostringstream s;
  if (signal != 0) {
    s << "signal " << signal << " (" << (sigabbrev_np(signal) ? sigabbrev_np(signal) : "?") << ")";
  } else {
    s << "exit code " << exit_code;
  }
  if (timed_out) s << " (timed out)";
  s << " after " << elapsed.count() << " ms; stderr:\n" << err;
  return s.str();
}

Process::Process(RunOptions options) : options_(std::move(options)) {
  if (options_.argv.empty()) throw std::runtime_error("loom::test::Process: empty argv");
  const std::vector<std::string> env = child_environment(options_);
  const std::vector<std::string> candidates = exec_candidates(options_.argv[0], env);
  std::vector<char*> argv;
  for (auto& a : options_.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  const char* cwd = options_.cwd.empty() ? nullptr : options_.cwd.c_str();
  struct sigaction default_action {};
  default_action.sa_handler = SIG_DFL;
  sigemptyset(&default_action.sa_mask);

  int out[2], err[2], report[2];
  if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0 || ::pipe2(report, O_CLOEXEC) != 0) {
    throw std::runtime_error(std::string("loom::test::Process: pipe: ") + std::strerror(errno));
  }
  const int dev_null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  start_ = Clock::now();
  pid_ = ::fork();
  if (pid_ < 0) {
    const int error = errno;
    for (int fd : {out[0], out[1], err[0], err[1], report[0], report[1], dev_null}) ::close(fd);
    throw std::runtime_error(std::string("loom::test::Process: fork: ") + std::strerror(error));
  }
  if (pid_ == 0) {
    ::setpgid(0, 0);
    sigset_t empty;
    sigemptyset(&empty);
    ::sigprocmask(SIG_SETMASK, &empty, nullptr);
    // Start from the defaults, whatever the test runner ignores (`make test &` ignores
    // SIGINT): the launcher keeps ignored signals ignored, and tests send them.
    for (int sig : {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT}) ::sigaction(sig, &default_action, nullptr);
    ::dup2(dev_null, STDIN_FILENO);
    ::dup2(out[1], STDOUT_FILENO);
    ::dup2(err[1], STDERR_FILENO);
    int error = 0;
    if (cwd && ::chdir(cwd) != 0) {
      error = errno;
    } else {
      error = ENOENT;
      for (const auto& c : candidates) {
        ::execve(c.c_str(), argv.data(), envp.data());
        if (errno != ENOENT && errno != ENOTDIR) error = errno;
      }
    }
    [[maybe_unused]] ssize_t n = ::write(report[1], &error, sizeof error);
    ::_exit(127);
  }
  ::setpgid(pid_, pid_);
  ::close(dev_null);
  ::close(out[1]);
  ::close(err[1]);
  ::close(report[1]);
  out_fd_ = out[0];
  err_fd_ = err[0];
  ::fcntl(out_fd_, F_SETFL, O_NONBLOCK);
  ::fcntl(err_fd_, F_SETFL, O_NONBLOCK);
  int error = 0;
  ssize_t n;
  do {
    n = ::read(report[0], &error, sizeof error);
  } while (n < 0 && errno == EINTR);
  ::close(report[0]);
  if (n == static_cast<ssize_t>(sizeof error)) {
    ::waitpid(pid_, nullptr, 0);
    reaped_ = true;
    ::close(out_fd_);
    ::close(err_fd_);
    throw std::runtime_error("loom::test::Process: cannot execute '" + options_.argv[0] + "': " + std::strerror(error));
  }
}

Process::~Process() {
  if (!reaped_ && pid_ > 0) {
    ::kill(-pid_, SIGKILL);
    ::kill(pid_, SIGKILL);
    const auto give_up = Clock::now() + kReapAfterKill;
    while (!try_reap() && Clock::now() < give_up) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (out_fd_ >= 0) ::close(out_fd_);
  if (err_fd_ >= 0) ::close(err_fd_);
}

void Process::send_signal(int signal) const {
  if (!reaped_ && pid_ > 0) ::kill(pid_, signal);
}

bool Process::try_reap() {
  if (reaped_) return true;
  int status = 0;
  const pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    reaped_ = true;
    result_.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start_);
    if (WIFSIGNALED(status)) {
      result_.signal = WTERMSIG(status);
    } else {
      result_.exit_code = WEXITSTATUS(status);
    }
  } else if (r < 0 && errno != EINTR) {
    reaped_ = true;  // not our child any more; nothing to wait for
  }
  return reaped_;
}

void Process::pump(int timeout_ms) {
  pollfd fds[2];
  std::string* sinks[2];
  int* owners[2];
  nfds_t n = 0;
  if (out_fd_ >= 0) {
    fds[n] = {out_fd_, POLLIN, 0};
    sinks[n] = &result_.out;
    owners[n++] = &out_fd_;
  }
  if (err_fd_ >= 0) {
    fds[n] = {err_fd_, POLLIN, 0};
    sinks[n] = &result_.err;
    owners[n++] = &err_fd_;
  }
  if (n == 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min(timeout_ms, 10)));
    return;
  }
  if (::poll(fds, n, timeout_ms) <= 0) return;
  for (nfds_t i = 0; i < n; ++i) {
    if (fds[i].revents == 0) continue;
    char buffer[65536];
    const ssize_t got = ::read(*owners[i], buffer, sizeof buffer);
    if (got > 0) {
      sinks[i]->append(buffer, static_cast<std::size_t>(got));
    } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
      ::close(*owners[i]);
      *owners[i] = -1;
    }
  }
}

bool Process::wait_for_output(const std::string& needle, int count, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    if (count_of(result_.out, needle) + count_of(result_.err, needle) >= count) return true;
    if (Clock::now() >= deadline || ((reaped_ || try_reap()) && out_fd_ < 0 && err_fd_ < 0)) return false;
    pump(millis_until(deadline, 10));
  }
}

RunResult Process::wait() {
  const auto deadline = start_ + options_.timeout;
  // Poll in short slices: the exit is noticed by waitpid, not by the pipes, since
  // something the process started may keep them open.
  while (!try_reap()) {
    if (Clock::now() >= deadline) {
      result_.timed_out = true;
      ::kill(-pid_, SIGKILL);
      ::kill(pid_, SIGKILL);
      const auto give_up = Clock::now() + kReapAfterKill;
      while (!try_reap() && Clock::now() < give_up) pump(5);
      break;
    }
    pump(millis_until(deadline, 10));
  }
  const auto output_deadline = Clock::now() + kOutputAfterExit;
  while ((out_fd_ >= 0 || err_fd_ >= 0) && Clock::now() < output_deadline) {
    pump(millis_until(output_deadline, 50));
  }
  result_.output_closed = out_fd_ < 0 && err_fd_ < 0;
  return result_;
}

RunResult run(RunOptions options) { return Process(std::move(options)).wait(); }

bool process_alive(pid_t pid) {
  if (pid <= 0) return false;
  if (::kill(pid, 0) != 0 && errno == ESRCH) return false;
  // A zombie (exited, not yet reaped by its parent) is gone for our purposes.
  FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/stat").c_str(), "r");
  if (!f) return false;
  char buffer[512] = {};
  const std::size_t n = std::fread(buffer, 1, sizeof buffer - 1, f);
  std::fclose(f);
  const char* close_paren = std::strrchr(buffer, ')');
  if (n == 0 || !close_paren || close_paren[1] == '\0') return true;
  const char state = close_paren[2];
  return state != 'Z' && state != 'X';
}

bool wait_until_gone(pid_t pid, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (process_alive(pid)) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

}  // namespace loom::test
