#include "loom/launch/child_process.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>

#include <chrono>
#include <thread>

#include "loom/core/error.h"
#include "loom/launch/worker_env.h"

namespace loom::launch {
namespace {

using namespace std::chrono_literals;

SpawnOptions shell(const std::string& script) {
  SpawnOptions o;
  o.argv = {"sh", "-c", script};
  o.env = current_environment();
  return o;
}

ExitStatus wait_for(ChildProcess& child, std::chrono::milliseconds timeout = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (auto status = child.try_wait()) return *status;
    std::this_thread::sleep_for(5ms);
  }
  ADD_FAILURE() << "child " << child.pid() << " did not exit within " << timeout.count() << " ms";
  return ExitStatus::exited(-1);
}

std::string read_all(UniqueFd fd) {
  std::string out;
  char buffer[4096];
  ssize_t n;
  while ((n = read(fd.get(), buffer, sizeof buffer)) > 0) out.append(buffer, n);
  return out;
}

TEST(ChildProcess, ReportsTheExitCode) {
  ChildProcess child = ChildProcess::spawn(shell("exit 3"));
  EXPECT_EQ(wait_for(child), ExitStatus::exited(3));
  EXPECT_TRUE(child.reaped());
  EXPECT_EQ(child.try_wait(), ExitStatus::exited(3));  // stays available
}

TEST(ChildProcess, CapturesStdoutAndStderrSeparatelyWithStdinEmpty) {
  ChildProcess child = ChildProcess::spawn(shell("echo out; echo err >&2; cat; echo done"));
  UniqueFd out = child.take_stdout();
  UniqueFd err = child.take_stderr();
  EXPECT_EQ(read_all(std::move(out)), "out\ndone\n");
  EXPECT_EQ(read_all(std::move(err)), "err\n");
  EXPECT_EQ(wait_for(child), ExitStatus::exited(0));
}

TEST(ChildProcess, UsesTheGivenEnvironmentAndItsPath) {
  SpawnOptions o;
  o.argv = {"sh", "-c", "echo \"$ONLY\""};
  o.env = {"ONLY=this", "PATH=/usr/bin:/bin"};
  ChildProcess child = ChildProcess::spawn(o);
  EXPECT_EQ(read_all(child.take_stdout()), "this\n");
  EXPECT_EQ(wait_for(child), ExitStatus::exited(0));
}

TEST(ChildProcess, RunsInTheGivenDirectory) {
  SpawnOptions o = shell("pwd");
  o.cwd = "/tmp";
  ChildProcess child = ChildProcess::spawn(o);
  EXPECT_EQ(read_all(child.take_stdout()), "/tmp\n");
  EXPECT_EQ(wait_for(child), ExitStatus::exited(0));
}

TEST(ChildProcess, AMissingProgramIsALaunchErrorNamingIt) {
  SpawnOptions o;
  o.argv = {"loom-no-such-program-xyz"};
  o.env = current_environment();
  try {
    ChildProcess::spawn(o);
    FAIL() << "expected LaunchError";
  } catch (const LaunchError& e) {
    EXPECT_NE(std::string(e.what()).find("loom-no-such-program-xyz"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("No such file"), std::string::npos) << e.what();
  }
  o.argv = {"/etc/hostname"};  // exists, not executable
  EXPECT_THROW(ChildProcess::spawn(o), LaunchError);
}

// One line from `fd` (without its newline), waiting at most `timeout` for it.
std::string read_line(int fd, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string line;
  char c = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (poll(&p, 1, static_cast<int>(std::max<int64_t>(left.count(), 0))) <= 0) break;
    if (read(fd, &c, 1) != 1 || c == '\n') return line;
    line += c;
  }
  ADD_FAILURE() << "no whole line within " << timeout.count() << " ms (got '" << line << "')";
  return line;
}

TEST(ChildProcess, SignalGroupReachesGrandchildren) {
  // The shell starts `sleep`, says its pid, and waits: killing only the shell would leave
  // sleep holding the pipe; the group signal must end both, so stdout reaches end of file.
  ChildProcess child = ChildProcess::spawn(shell("sleep 60 & echo $!; wait"));
  UniqueFd out = child.take_stdout();
  // Signalled only once the grandchild exists (its pid has been printed), not after a
  // guessed delay.
  const pid_t grandchild = static_cast<pid_t>(std::stol(read_line(out.get(), 10s)));
  ASSERT_EQ(kill(grandchild, 0), 0);
  child.signal_group(SIGTERM);
  EXPECT_EQ(wait_for(child), ExitStatus::killed(SIGTERM));
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(read_all(std::move(out)), "");  // returns at EOF: nobody holds the pipe
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
}

TEST(ChildProcess, ResetsRequestedSignalsToDefault) {
  struct sigaction ignore {
  }, previous{};
  ignore.sa_handler = SIG_IGN;
  sigaction(SIGUSR1, &ignore, &previous);
  SpawnOptions inherits = shell("kill -USR1 $$; exit 0");
  ChildProcess a = ChildProcess::spawn(inherits);
  EXPECT_EQ(wait_for(a), ExitStatus::exited(0));  // SIGUSR1 stayed ignored
  SpawnOptions reset = inherits;
  reset.default_signals = {SIGUSR1};
  ChildProcess b = ChildProcess::spawn(reset);
  EXPECT_EQ(wait_for(b), ExitStatus::killed(SIGUSR1));
  sigaction(SIGUSR1, &previous, nullptr);
}

TEST(ChildProcess, DestructorKillsAndReapsARunningChild) {
  pid_t pid;
  {
    ChildProcess child = ChildProcess::spawn(shell("exec sleep 60"));
    pid = child.pid();
    ASSERT_EQ(kill(pid, 0), 0);
  }
  // Reaped: the pid is no longer ours (not even a zombie).
  EXPECT_EQ(kill(pid, 0), -1);
  EXPECT_EQ(errno, ESRCH);
}

TEST(ChildProcess, InheritsOutputWithoutCapture) {
  SpawnOptions o = shell("exit 0");
  o.capture_output = false;
  ChildProcess child = ChildProcess::spawn(o);
  EXPECT_FALSE(child.take_stdout().valid());
  EXPECT_EQ(wait_for(child), ExitStatus::exited(0));
}

}  // namespace
}  // namespace loom::launch
