// The launcher as a library: supervise() in this process, with /bin/sh workers and the
// relayed output captured in memory files. The CLI-level contract (exit codes, the one
// error line, SIGTERM to the launcher) is covered by tests/integration/launcher_test.cpp.
#include "loom/launch/launcher.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "loom/core/error.h"
#include "loom/launch/unique_fd.h"

namespace loom::launch {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

struct Capture {
  UniqueFd out{memfd_create("launcher-out", MFD_CLOEXEC)};
  UniqueFd err{memfd_create("launcher-err", MFD_CLOEXEC)};

  static std::string read_all(const UniqueFd& fd) {
    std::string s;
    char buffer[4096];
    ssize_t n;
    off_t offset = 0;
    while ((n = pread(fd.get(), buffer, sizeof buffer, offset)) > 0) {
      s.append(buffer, n);
      offset += n;
    }
    return s;
  }
  std::string stdout_text() const { return read_all(out); }
  std::string stderr_text() const { return read_all(err); }
};

LaunchOptions shell(int nproc, const std::string& script, Capture& capture) {
  LaunchOptions o;
  o.nproc = nproc;
  o.command = {"sh", "-c", script};
  o.stdout_fd = capture.out.get();
  o.stderr_fd = capture.err.get();
  o.stop_grace = 2s;
  return o;
}

TEST(Supervise, AllWorkersExitZero) {
  Capture c;
  const LaunchResult r = supervise(shell(3, "echo hello from $RANK", c));
  EXPECT_TRUE(r.success());
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.failed_rank, -1);
  EXPECT_EQ(r.message, "");
  std::vector<std::string> lines;
  std::istringstream in(c.stdout_text());
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  std::sort(lines.begin(), lines.end());
  EXPECT_EQ(lines, (std::vector<std::string>{"[0]: hello from 0", "[1]: hello from 1", "[2]: hello from 2"}));
}

TEST(Supervise, AFailureStopsTheOthersAndNamesTheRank) {
  Capture c;
  const auto start = Clock::now();
  const LaunchResult r = supervise(shell(3, "test $RANK = 2 && { echo bye >&2; exit 7; }; sleep 60", c));
  EXPECT_LT(Clock::now() - start, 5s);
  EXPECT_EQ(r.exit_code, 7);
  EXPECT_EQ(r.failed_rank, 2);
  EXPECT_EQ(r.failed_status, ExitStatus::exited(7));
  EXPECT_EQ(r.message, "rank 2 exited with code 7");
  EXPECT_EQ(c.stderr_text(), "[2]: bye\n");
}

TEST(Supervise, ASignalDeathGives128PlusSignal) {
  Capture c;
  const LaunchResult r = supervise(shell(2, "test $RANK = 0 && kill -SEGV $$; sleep 60", c));
  EXPECT_EQ(r.exit_code, 128 + SIGSEGV);
  EXPECT_EQ(r.failed_rank, 0);
  EXPECT_EQ(r.message, "rank 0 was killed by signal 11 (SIGSEGV)");
}

TEST(Supervise, EscalatesToSigkillAfterTheGracePeriod) {
  Capture c;
  // Rank 0 ignores SIGTERM (so do its sleeps), then tells rank 1 to fail.
  char dir[] = "/tmp/loom-launch-test-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string flag = std::string(dir) + "/up";
  LaunchOptions o = shell(2,
                          "if [ $RANK = 1 ]; then while [ ! -e " + flag +
                              " ]; do sleep 0.01; done; exit 1; fi; "
                              "trap '' TERM; touch " +
                              flag + "; while :; do sleep 0.05; done",
                          c);
  o.stop_grace = 300ms;
  const auto start = Clock::now();
  const LaunchResult r = supervise(o);
  const auto took = Clock::now() - start;
  EXPECT_EQ(r.failed_rank, 1);
  EXPECT_GE(took, 300ms);
  EXPECT_LT(took, 5s);
  unlink(flag.c_str());
  rmdir(dir);
}

TEST(Supervise, RestartsAllWorkersWithTheAttemptNumber) {
  Capture c;
  LaunchOptions o = shell(
      2, "echo attempt $LOOM_RESTART_COUNT; test $LOOM_RESTART_COUNT -lt 2 && test $RANK = 1 && exit 4; exit 0", c);
  o.max_restarts = 2;
  const LaunchResult r = supervise(o);
  EXPECT_TRUE(r.success()) << r.message;
  EXPECT_EQ(r.restarts, 2);
  const std::string out = c.stdout_text();
  for (const char* line : {"[0]: attempt 0\n", "[1]: attempt 1\n", "[0]: attempt 2\n", "[1]: attempt 2\n"}) {
    EXPECT_NE(out.find(line), std::string::npos) << line << " missing from:\n" << out;
  }
}

TEST(Supervise, GivesUpWhenRestartsAreUsedUp) {
  Capture c;
  LaunchOptions o = shell(2, "test $RANK = 0 && exit 5; sleep 60", c);
  o.max_restarts = 2;
  const LaunchResult r = supervise(o);
  EXPECT_EQ(r.exit_code, 5);
  EXPECT_EQ(r.restarts, 2);
  EXPECT_EQ(r.message, "rank 0 exited with code 5 after 2 restarts");
}

TEST(Supervise, ExtraEnvAndMultiNodeRanks) {
  Capture c;
  LaunchOptions o = shell(2, "echo $RANK/$WORLD_SIZE/$LOCAL_RANK/$NODE_RANK/$MASTER_PORT/$ROLE", c);
  o.nnodes = 2;
  o.node_rank = 1;
  o.master_port = 29999;  // not bound by anyone here: the workers only print it
  o.extra_env = [](int rank) {
    return std::vector<std::pair<std::string, std::string>>{{"ROLE", rank == 2 ? "server" : "worker"}};
  };
  const LaunchResult r = supervise(o);
  ASSERT_TRUE(r.success()) << r.message;
  const std::string out = c.stdout_text();
  EXPECT_NE(out.find("[2]: 2/4/0/1/29999/server\n"), std::string::npos) << out;
  EXPECT_NE(out.find("[3]: 3/4/1/1/29999/worker\n"), std::string::npos) << out;
}

TEST(Supervise, PicksOneFreePortForAllWorkers) {
  Capture c;
  const LaunchResult r = supervise(shell(3, "echo port=$MASTER_PORT", c));
  ASSERT_TRUE(r.success());
  const std::string out = c.stdout_text();
  const std::regex port_re("port=(\\d+)");
  std::set<std::string> ports;
  for (auto it = std::sregex_iterator(out.begin(), out.end(), port_re); it != std::sregex_iterator(); ++it) {
    ports.insert((*it)[1]);
  }
  ASSERT_EQ(ports.size(), 1u) << out;
  EXPECT_NE(*ports.begin(), "0");
}

TEST(Supervise, AMissingCommandIsALaunchErrorAndLeavesNothingRunning) {
  Capture c;
  LaunchOptions o = shell(1, "", c);
  o.command = {"loom-no-such-program-xyz", "arg"};
  o.nproc = 2;
  EXPECT_THROW(supervise(o), LaunchError);
}

TEST(Supervise, InvalidOptionsAreConfigErrors) {
  Capture c;
  LaunchOptions o = shell(0, "true", c);
  EXPECT_THROW(supervise(o), ConfigError);
}

TEST(Supervise, ASignalToTheLauncherStopsTheWorkers) {
  Capture c;
  // Rank 0 signals the launcher (its parent) once both are up; neither exits on its own.
  LaunchOptions o = shell(2, "test $RANK = 0 && { sleep 0.2; kill -TERM $PPID; }; exec sleep 60", c);
  const auto start = Clock::now();
  const LaunchResult r = supervise(o);
  EXPECT_LT(Clock::now() - start, 5s);
  EXPECT_EQ(r.received_signal, SIGTERM);
  EXPECT_EQ(r.exit_code, 128 + SIGTERM);
  EXPECT_EQ(r.failed_rank, -1);
  EXPECT_NE(r.message.find("SIGTERM"), std::string::npos) << r.message;
}

}  // namespace
}  // namespace loom::launch
