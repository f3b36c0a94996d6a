// `loom run` end to end: the real binary, real worker processes, real signals.
// These are the launcher's contract tests (DESIGN.md "CLI" and "Failure").
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "support/process.h"

namespace {

using namespace std::chrono_literals;
using loom::test::Process;
using loom::test::RunOptions;
using loom::test::RunResult;

RunOptions loom_options(std::vector<std::string> args, std::chrono::milliseconds timeout = 30s) {
  RunOptions o;
  o.argv = {LOOM_BINARY};
  o.argv.insert(o.argv.end(), args.begin(), args.end());
  // An outer launcher (or a developer's shell) must not leak into what we check.
  o.unset_env = {"RANK",        "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE",   "MASTER_ADDR",
                 "MASTER_PORT", "GROUP_RANK", "NODE_RANK",  "LOOM_RESTART_COUNT", "LOOM_LAUNCHED"};
  o.timeout = timeout;
  return o;
}

RunResult loom_run(std::vector<std::string> args, std::chrono::milliseconds timeout = 30s) {
  return loom::test::run(loom_options(std::move(args), timeout));
}

// The lines of `text` that the launcher itself printed ("loom: ..." or "[loom] ...").
std::vector<std::string> launcher_lines(const RunResult& r) {
  std::vector<std::string> out;
  for (const auto& line : r.err_lines()) {
    if (line.rfind("loom:", 0) == 0 || line.rfind("[loom]", 0) == 0) out.push_back(line);
  }
  return out;
}

std::vector<std::string> error_lines(const RunResult& r) {
  std::vector<std::string> out;
  for (const auto& line : r.err_lines()) {
    if (line.rfind("loom:", 0) == 0) out.push_back(line);
  }
  return out;
}

// "[<rank>]: <key>=<value>" lines, by rank and key.
std::map<int, std::map<std::string, std::string>> env_by_rank(const std::string& out) {
  std::map<int, std::map<std::string, std::string>> env;
  const std::regex line_re(R"(^\[(\d+)\]: ([A-Z_]+)=(.*)$)");
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) {
    std::smatch m;
    if (std::regex_match(line, m, line_re)) env[std::stoi(m[1])][m[2]] = m[3];
  }
  return env;
}

std::vector<pid_t> pids_in(const std::string& out, const std::string& word) {
  std::vector<pid_t> pids;
  const std::regex re(word + R"( (\d+))");
  for (auto it = std::sregex_iterator(out.begin(), out.end(), re); it != std::sregex_iterator(); ++it) {
    pids.push_back(static_cast<pid_t>(std::stol((*it)[1])));
  }
  return pids;
}

const char* kPrintEnv =
    "for v in RANK WORLD_SIZE LOCAL_RANK LOCAL_WORLD_SIZE MASTER_ADDR MASTER_PORT GROUP_RANK "
    "NODE_RANK LOOM_RESTART_COUNT LOOM_LAUNCHED; do echo \"$v=$(printenv $v)\"; done";

// ---- exit codes ---------------------------------------------------------------------

TEST(LoomRun, AllWorkersExitZeroGivesZeroAndNoErrorLine) {
  const RunResult r = loom_run({"run", "--nproc", "2", "--", "sh", "-c", "exit 0"});
  EXPECT_TRUE(r.exited_with(0)) << r.describe();
  EXPECT_TRUE(launcher_lines(r).empty()) << r.err;
}

TEST(LoomRun, OneWorkerExitingThreeFailsAndNamesTheRank) {
  const RunResult r = loom_run({"run", "--nproc", "3", "--", "sh", "-c", "test $RANK = 2 && exit 3; exit 0"});
  EXPECT_TRUE(r.exited_with(3)) << r.describe();
  EXPECT_EQ(error_lines(r), std::vector<std::string>{"loom: launch error: rank 2 exited with code 3"}) << r.err;
}

// The issue's acceptance check, verbatim.
TEST(LoomRun, AcceptanceFailingRankStopsTheSleepingOneWithinTenSeconds) {
  const RunResult r = loom_run({"run", "--nproc", "2", "--", "sh", "-c", "test $RANK = 1 && exit 3; sleep 60"}, 20s);
  EXPECT_FALSE(r.timed_out) << r.describe();
  EXPECT_NE(r.exit_code, 0) << r.describe();
  EXPECT_EQ(r.signal, 0) << r.describe();
  EXPECT_LT(r.elapsed, 10s) << r.describe();
  ASSERT_EQ(error_lines(r).size(), 1u) << r.err;
  EXPECT_NE(error_lines(r)[0].find("rank 1"), std::string::npos) << r.err;
  EXPECT_EQ(error_lines(r)[0], "loom: launch error: rank 1 exited with code 3");
}

TEST(LoomRun, AWorkerKilledBySignalIsNamedWithTheSignal) {
  const RunResult r = loom_run({"run", "--nproc", "2", "--", "sh", "-c", "test $RANK = 0 && kill -KILL $$; sleep 60"});
  EXPECT_TRUE(r.exited_with(128 + SIGKILL)) << r.describe();
  EXPECT_LT(r.elapsed, 10s);
  EXPECT_EQ(error_lines(r), std::vector<std::string>{"loom: launch error: rank 0 was killed by signal 9 (SIGKILL)"})
      << r.err;
}

TEST(LoomRun, NoWorkerOutlivesAFailure) {
  const RunResult r = loom_run({"run", "--nproc", "3", "--", "sh", "-c",
                                "echo pid $$; test $RANK = 1 && { sleep 0.3; exit 3; }; exec sleep 60"});
  EXPECT_TRUE(r.exited_with(3)) << r.describe();
  const std::vector<pid_t> pids = pids_in(r.out, "pid");
  EXPECT_EQ(pids.size(), 3u) << r.out;
  for (pid_t pid : pids) EXPECT_TRUE(loom::test::wait_until_gone(pid, 3s)) << "worker " << pid << " still alive";
}

// ---- output ---------------------------------------------------------------------------

TEST(LoomRun, OutputLinesArePrefixedWholeAndInOrder) {
  // sed writes in 4 KiB blocks that cut lines anywhere; the launcher must reassemble them.
  constexpr int kLines = 20000;
  const std::string pad(60, 'x');
  const std::string script = "seq 1 " + std::to_string(kLines) + " | sed \"s/.*/rank $RANK line & " + pad +
                             "/\"; echo \"to stderr $RANK\" >&2; printf 'tail without newline'";
  const RunResult r = loom_run({"run", "--nproc", "3", "--", "sh", "-c", script});
  ASSERT_TRUE(r.exited_with(0)) << r.describe();

  const std::regex line_re("^\\[(\\d)\\]: rank (\\d) line (\\d+) " + pad + "$");
  std::map<int, int> last_line;
  std::map<int, int> tails;
  for (const auto& line : r.out_lines()) {
    std::smatch m;
    if (std::regex_match(line, m, line_re)) {
      const int rank = std::stoi(m[1]);
      ASSERT_EQ(m[2], m[1]) << "a line of one rank carries another's prefix: " << line;
      ASSERT_EQ(std::stoi(m[3]), last_line[rank] + 1) << "rank " << rank << " out of order: " << line;
      last_line[rank] = std::stoi(m[3]);
      continue;
    }
    std::smatch t;
    ASSERT_TRUE(std::regex_match(line, t, std::regex(R"(^\[(\d)\]: tail without newline$)")))
        << "unexpected (interleaved?) line: " << line.substr(0, 200);
    ++tails[std::stoi(t[1])];
  }
  for (int rank = 0; rank < 3; ++rank) {
    EXPECT_EQ(last_line[rank], kLines) << "rank " << rank;
    EXPECT_EQ(tails[rank], 1) << "rank " << rank << "'s partial last line";
    EXPECT_NE(r.err.find("[" + std::to_string(rank) + "]: to stderr " + std::to_string(rank) + "\n"), std::string::npos)
        << r.err;
  }
  EXPECT_EQ(r.out.find("to stderr"), std::string::npos) << "stderr went to stdout";
}

TEST(LoomRun, NoPrefixPassesOutputThrough) {
  const RunResult r = loom_run({"run", "--nproc", "2", "--no-prefix", "--", "sh", "-c", "echo plain"});
  ASSERT_TRUE(r.exited_with(0)) << r.describe();
  EXPECT_EQ(r.out, "plain\nplain\n");
}

// ---- environment ------------------------------------------------------------------------

TEST(LoomRun, SetsTorchrunEnvironmentForEachRank) {
  const RunResult r = loom_run({"run", "--nproc", "3", "--", "sh", "-c", kPrintEnv});
  ASSERT_TRUE(r.exited_with(0)) << r.describe();
  auto env = env_by_rank(r.out);
  ASSERT_EQ(env.size(), 3u) << r.out;
  std::set<std::string> ports;
  for (int rank = 0; rank < 3; ++rank) {
    auto& e = env[rank];
    EXPECT_EQ(e["RANK"], std::to_string(rank));
    EXPECT_EQ(e["LOCAL_RANK"], std::to_string(rank));
    EXPECT_EQ(e["WORLD_SIZE"], "3");
    EXPECT_EQ(e["LOCAL_WORLD_SIZE"], "3");
    EXPECT_EQ(e["MASTER_ADDR"], "127.0.0.1");
    EXPECT_EQ(e["GROUP_RANK"], "0");
    EXPECT_EQ(e["NODE_RANK"], "0");
    EXPECT_EQ(e["LOOM_RESTART_COUNT"], "0");
    EXPECT_EQ(e["LOOM_LAUNCHED"], "1");
    ports.insert(e["MASTER_PORT"]);
  }
  ASSERT_EQ(ports.size(), 1u) << "all ranks share one port";
  const int port = std::stoi(*ports.begin());
  EXPECT_GT(port, 0);
  EXPECT_LE(port, 65535);
}

TEST(LoomRun, OneNodeOfAMultiNodeJobGetsGlobalRanks) {
  const RunResult r = loom_run({"run", "--nproc", "2", "--nnodes", "3", "--node-rank", "2", "--master-addr", "10.0.0.7",
                                "--master-port", "29555", "--", "sh", "-c", kPrintEnv});
  ASSERT_TRUE(r.exited_with(0)) << r.describe();
  auto env = env_by_rank(r.out);
  ASSERT_EQ(env.size(), 2u) << r.out;
  for (int local = 0; local < 2; ++local) {
    const int rank = 4 + local;
    auto& e = env[rank];
    EXPECT_EQ(e["RANK"], std::to_string(rank)) << r.out;
    EXPECT_EQ(e["LOCAL_RANK"], std::to_string(local));
    EXPECT_EQ(e["WORLD_SIZE"], "6");
    EXPECT_EQ(e["LOCAL_WORLD_SIZE"], "2");
    EXPECT_EQ(e["GROUP_RANK"], "2");
    EXPECT_EQ(e["NODE_RANK"], "2");
    EXPECT_EQ(e["MASTER_ADDR"], "10.0.0.7");
    EXPECT_EQ(e["MASTER_PORT"], "29555");
  }
}

// ---- signals to the launcher ------------------------------------------------------------

void expect_signal_stops_workers(int signal, const std::vector<std::string>& extra_flags, const std::string& script,
                                 std::chrono::milliseconds max_elapsed) {
  std::vector<std::string> args = {"run", "--nproc", "2"};
  args.insert(args.end(), extra_flags.begin(), extra_flags.end());
  args.insert(args.end(), {"--", "sh", "-c", script});
  Process launcher(loom_options(args));
  ASSERT_TRUE(launcher.wait_for_output("ready", 2, 10s)) << launcher.out() << launcher.err();
  const std::vector<pid_t> pids = pids_in(launcher.out(), "ready");
  ASSERT_EQ(pids.size(), 2u) << launcher.out();
  const auto sent = std::chrono::steady_clock::now();
  launcher.send_signal(signal);
  const RunResult r = launcher.wait();
  EXPECT_FALSE(r.timed_out) << r.describe();
  EXPECT_TRUE(r.exited_with(128 + signal)) << r.describe();
  EXPECT_LT(std::chrono::steady_clock::now() - sent, max_elapsed) << r.describe();
  const auto lines = error_lines(r);
  ASSERT_EQ(lines.size(), 1u) << r.err;
  EXPECT_NE(lines[0].find(signal == SIGINT ? "SIGINT" : "SIGTERM"), std::string::npos) << lines[0];
  for (pid_t pid : pids)
    EXPECT_TRUE(loom::test::wait_until_gone(pid, 3s)) << "worker " << pid << " outlived the launcher";
}

TEST(LoomRun, SigtermToTheLauncherStopsTheWorkers) {
  expect_signal_stops_workers(SIGTERM, {}, "echo ready $$; exec sleep 60", 5s);
}

TEST(LoomRun, SigintToTheLauncherStopsTheWorkers) {
  expect_signal_stops_workers(SIGINT, {}, "echo ready $$; exec sleep 60", 5s);
}

TEST(LoomRun, WorkersIgnoringSigtermAreKilledAfterTheGracePeriod) {
  expect_signal_stops_workers(SIGTERM, {"--stop-grace", "1"}, "trap '' TERM INT; echo ready $$; exec sleep 60", 6s);
}

// ---- restarts ---------------------------------------------------------------------------

TEST(LoomRun, ARestartRecoversAFirstAttemptFailure) {
  const RunResult r = loom_run({"run", "--nproc", "2", "--max-restarts", "1", "--", "sh", "-c",
                                "echo attempt $LOOM_RESTART_COUNT; "
                                "test $LOOM_RESTART_COUNT = 0 && test $RANK = 1 && exit 4; exit 0"});
  EXPECT_TRUE(r.exited_with(0)) << r.describe();
  EXPECT_TRUE(error_lines(r).empty()) << r.err;
  for (const char* line : {"[1]: attempt 0\n", "[0]: attempt 1\n", "[1]: attempt 1\n"}) {
    EXPECT_NE(r.out.find(line), std::string::npos) << line << " missing from:\n" << r.out;
  }
  // The failure that caused the restart is logged, naming the rank.
  EXPECT_NE(r.err.find("rank 1 exited with code 4"), std::string::npos) << r.err;
}

TEST(LoomRun, GivesUpWhenRestartsAreUsedUp) {
  const RunResult r = loom_run({"run", "--nproc", "2", "--max-restarts", "1", "--", "sh", "-c",
                                "echo attempt $LOOM_RESTART_COUNT; test $RANK = 0 && exit 5; sleep 60"});
  EXPECT_TRUE(r.exited_with(5)) << r.describe();
  EXPECT_LT(r.elapsed, 10s);
  EXPECT_EQ(error_lines(r), std::vector<std::string>{"loom: launch error: rank 0 exited with code 5 after 1 restart"})
      << r.err;
  EXPECT_NE(r.out.find("[0]: attempt 1\n"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("attempt 2"), std::string::npos) << r.out;
}

// ---- bad input ---------------------------------------------------------------------------

void expect_one_line_error(const std::vector<std::string>& args, const std::string& needle) {
  const RunResult r = loom_run(args, 10s);
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.signal, 0);
  EXPECT_NE(r.exit_code, 0) << r.describe();
  const auto lines = r.err_lines();
  ASSERT_EQ(lines.size(), 1u) << "expected one line, got:\n" << r.err;
  EXPECT_EQ(lines[0].rfind("loom: ", 0), 0u) << lines[0];
  EXPECT_NE(lines[0].find(needle), std::string::npos) << "expected '" << needle << "' in: " << lines[0];
  EXPECT_EQ(r.out, "");
}

TEST(LoomRun, BadFlagsGiveOneLineErrors) {
  expect_one_line_error({"run", "--nproc", "0", "--", "true"}, "--nproc");
  expect_one_line_error({"run", "--nproc", "abc", "--", "true"}, "--nproc");
  expect_one_line_error({"run", "--nnodes", "2", "--node-rank", "2", "--master-port", "29500", "--", "true"},
                        "--node-rank");
  expect_one_line_error({"run", "--nnodes", "0", "--", "true"}, "--nnodes");
  expect_one_line_error({"run", "--nnodes", "2", "--", "true"}, "--master-port");
  expect_one_line_error({"run", "--master-port", "70000", "--", "true"}, "--master-port");
  expect_one_line_error({"run", "--max-restarts", "-1", "--", "true"}, "--max-restarts");
  expect_one_line_error({"run", "--stop-grace", "-1", "--", "true"}, "--stop-grace");
  expect_one_line_error({"run", "--bogus", "--", "true"}, "--bogus");
}

TEST(LoomRun, AMissingCommandIsAOneLineError) {
  expect_one_line_error({"run", "--nproc", "2"}, "no command");
  expect_one_line_error({"run", "--nproc", "2", "--"}, "no command");
  expect_one_line_error({"run", "--nproc", "2", "--", "loom-no-such-program-xyz"}, "loom-no-such-program-xyz");
}

}  // namespace
