#include "loom/launch/child_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "loom/core/error.h"

namespace loom::launch {

namespace {

// What the child reports through the exec-error pipe before it gives up.
enum Stage : int { kStageExec = 1, kStageChdir = 2 };
struct ChildError {
  int stage;
  int error;
};

constexpr auto kReapAfterKill = std::chrono::milliseconds(1000);

std::string path_of(const std::vector<std::string>& env) {
  for (const auto& entry : env) {
    if (entry.rfind("PATH=", 0) == 0) return entry.substr(5);
  }
  const char* path = std::getenv("PATH");
  return path ? path : "/usr/local/bin:/usr/bin:/bin";
}

// The files execve() should try, in order, like execvp() (which is not async-signal-safe).
std::vector<std::string> exec_candidates(const std::string& program, const std::string& path) {
  if (program.find('/') != std::string::npos) return {program};
  std::vector<std::string> out;
  std::size_t begin = 0;
  while (begin <= path.size()) {
    std::size_t end = path.find(':', begin);
    if (end == std::string::npos) end = path.size();
    const std::string dir = path.substr(begin, end - begin);
    out.push_back((dir.empty() ? std::string(".") : dir) + "/" + program);
    begin = end + 1;
  }
  return out;
}

// Moves `fd` to a number above stdin/stdout/stderr (when the parent had closed one of
// them, a new descriptor can land there and be clobbered by the child's dup2 calls).
UniqueFd above_stdio(UniqueFd fd, const char* what, const std::string& program) {
  if (fd.get() > STDERR_FILENO) return fd;
  const int moved = ::fcntl(fd.get(), F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
  LOOM_CHECK(moved >= 0, LaunchError, "cannot start '{}': {}: {}", program, what, std::strerror(errno));
  return UniqueFd(moved);
}

void make_pipe(UniqueFd& read_end, UniqueFd& write_end, const std::string& program) {
  int fds[2];
  LOOM_CHECK(::pipe2(fds, O_CLOEXEC) == 0, LaunchError, "cannot start '{}': pipe: {}", program, std::strerror(errno));
  read_end = above_stdio(UniqueFd(fds[0]), "pipe", program);
  write_end = above_stdio(UniqueFd(fds[1]), "pipe", program);
}

// In the child, between fork and exec: async-signal-safe calls only.
[[noreturn]] void child_fail(int error_fd, Stage stage, int error) {
  const ChildError report{stage, error};
  [[maybe_unused]] ssize_t n = ::write(error_fd, &report, sizeof report);
  ::_exit(127);
}

}  // namespace

ChildProcess ChildProcess::spawn(const SpawnOptions& options) {
  LOOM_CHECK(!options.argv.empty() && !options.argv[0].empty(), LaunchError,
             "cannot start a process: the command is empty");
  const std::string& program = options.argv[0];

  // Everything the child touches is prepared here, before fork().
  const std::vector<std::string> candidates = exec_candidates(program, path_of(options.env));
  std::vector<char*> argv;
  for (const auto& arg : options.argv) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (const auto& entry : options.env) envp.push_back(const_cast<char*>(entry.c_str()));
  envp.push_back(nullptr);
  const char* cwd = options.cwd.empty() ? nullptr : options.cwd.c_str();
  sigset_t empty_mask;
  sigemptyset(&empty_mask);
  struct sigaction default_action {};
  default_action.sa_handler = SIG_DFL;
  sigemptyset(&default_action.sa_mask);

  UniqueFd dev_null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  LOOM_CHECK(dev_null.valid(), LaunchError, "cannot start '{}': /dev/null: {}", program, std::strerror(errno));
  dev_null = above_stdio(std::move(dev_null), "/dev/null", program);
  UniqueFd out_read, out_write, err_read, err_write, report_read, report_write;
  if (options.capture_output) {
    make_pipe(out_read, out_write, program);
    make_pipe(err_read, err_write, program);
  }
  make_pipe(report_read, report_write, program);

  const pid_t pid = ::fork();
  LOOM_CHECK(pid >= 0, LaunchError, "cannot start '{}': fork: {}", program, std::strerror(errno));
  if (pid == 0) {
    const int report = report_write.get();
    ::setpgid(0, 0);
    for (int sig : options.default_signals) ::sigaction(sig, &default_action, nullptr);
    ::sigprocmask(SIG_SETMASK, &empty_mask, nullptr);
    ::dup2(dev_null.get(), STDIN_FILENO);
    if (options.capture_output) {
      ::dup2(out_write.get(), STDOUT_FILENO);
      ::dup2(err_write.get(), STDERR_FILENO);
    }
    if (cwd && ::chdir(cwd) != 0) child_fail(report, kStageChdir, errno);
    int error = ENOENT;
    for (const auto& candidate : candidates) {
      ::execve(candidate.c_str(), argv.data(), envp.data());
      // Like execvp: a file that is missing is skipped; any other reason is kept.
      if (errno != ENOENT && errno != ENOTDIR) error = errno;
    }
    child_fail(report, kStageExec, error);
  }

  // Also from the parent, so the group exists before the first signal_group() whichever
  // process runs first (EACCES once the child has exec'd is fine: it did it itself).
  ::setpgid(pid, pid);
  ChildProcess child;
  child.pid_ = pid;
  child.stdout_ = std::move(out_read);
  child.stderr_ = std::move(err_read);
  report_write.reset();
  out_write.reset();
  err_write.reset();

  // Closed by execve (O_CLOEXEC) on success; carries the reason otherwise.
  ChildError failure{};
  ssize_t n;
  do {
    n = ::read(report_read.get(), &failure, sizeof failure);
  } while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(sizeof failure)) {
    child.try_wait();  // it exits right after reporting; the destructor reaps it otherwise
    if (failure.stage == kStageChdir) {
      LOOM_THROW(LaunchError, "cannot start '{}': cannot change to directory '{}': {}", program, options.cwd,
                 std::strerror(failure.error));
    }
    LOOM_THROW(LaunchError, "cannot execute '{}': {}", program, std::strerror(failure.error));
  }
  return child;
}

ChildProcess::ChildProcess(ChildProcess&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      stdout_(std::move(other.stdout_)),
      stderr_(std::move(other.stderr_)),
      status_(std::exchange(other.status_, std::nullopt)) {}

ChildProcess& ChildProcess::operator=(ChildProcess&& other) noexcept {
  if (this != &other) {
    kill_and_reap();
    pid_ = std::exchange(other.pid_, -1);
    stdout_ = std::move(other.stdout_);
    stderr_ = std::move(other.stderr_);
    status_ = std::exchange(other.status_, std::nullopt);
  }
  return *this;
}

ChildProcess::~ChildProcess() { kill_and_reap(); }

void ChildProcess::kill_and_reap() noexcept {
  if (pid_ <= 0 || status_) return;
  signal_group(SIGKILL);
  const auto give_up = std::chrono::steady_clock::now() + kReapAfterKill;
  while (!try_wait() && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

void ChildProcess::signal_group(int signal) const noexcept {
  if (pid_ <= 0) return;
  if (::kill(-pid_, signal) != 0 && !status_) ::kill(pid_, signal);
}

std::optional<ExitStatus> ChildProcess::try_wait() {
  if (status_ || pid_ <= 0) return status_;
  int status = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &status, WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == pid_) {
    status_ = ExitStatus::from_wait_status(status);
  } else if (r < 0 && errno == ECHILD) {
    // Reaped behind our back (SIGCHLD set to SIG_IGN by someone): its status is lost.
    status_ = ExitStatus::exited(255);
  }
  return status_;
}

}  // namespace loom::launch
