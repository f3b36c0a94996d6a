// A peer that stops answering (SIGSTOP, as a hung or cut-off process would) makes the
// others fail within --timeout with an error naming the operation and the silent rank,
// for every strategy and both allreduce transports. The stopped process is then killed
// by the launcher: the job ends, nothing hangs.
#include <gtest/gtest.h>

#include <chrono>

#include "support/process.h"
#include "support/train_runs.h"

namespace {

struct StopCase {
  std::string name;
  std::vector<std::string> args;
  std::string fault;                                     // LOOM_FAULT_INJECT
  std::vector<std::pair<std::string, std::string>> env;  // more variables
  std::vector<std::string> expected;                     // all must appear in one line of stderr
};

void PrintTo(const StopCase& c, std::ostream* os) { *os << c.name; }

class SilentPeer : public ::testing::TestWithParam<StopCase> {};

TEST_P(SilentPeer, OthersFailWithinTheTimeoutNamingIt) {
  const StopCase& c = GetParam();
  loom::test::RunOptions o;
  o.argv = {LOOM_BINARY,           "train",      "--model",      "mlp",       "--data",  "synthetic",
            "--synthetic-samples", "2048",       "--batch-size", "48",        "--steps", "40",
            "--no-eval",           "--progress", "off",          "--timeout", "5"};
  o.argv.insert(o.argv.end(), c.args.begin(), c.args.end());
  o.env = c.env;
  o.env.emplace_back("LOOM_FAULT_INJECT", c.fault);
  o.unset_env = loom::test::job_env_names();
  o.timeout = std::chrono::seconds(120);
  const auto start = std::chrono::steady_clock::now();
  const auto r = loom::test::run(o);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_FALSE(r.timed_out) << "hung: " << r.describe();
  EXPECT_NE(r.exit_code, 0) << r.describe();
  // Start-up, 5 s of --timeout, the diagnosis (at most 3 s) and the launcher's grace
  // period for the stopped process.
  EXPECT_LT(took, 60.0) << r.describe();
  bool named = false;
  for (const auto& line : r.err_lines()) {
    bool all = true;
    for (const auto& e : c.expected) all = all && line.find(e) != std::string::npos;
    named = named || all;
  }
  EXPECT_TRUE(named) << "expected one line with all of [" << ::testing::PrintToString(c.expected) << "] in:\n" << r.err;
}

INSTANTIATE_TEST_SUITE_P(
    Strategies, SilentPeer,
    ::testing::Values(
        StopCase{"allreduce_shm",
                 {"--strategy", "allreduce", "--nproc", "3"},
                 "stop:1:5",
                 {},
                 {"allreduce on group 'world'", "timed out", "silent: ", "rank 1 (last heard"}},
        StopCase{"allreduce_gloo",
                 {"--strategy", "allreduce", "--nproc", "3"},
                 "stop:2:5",
                 {{"LOOM_SHM_ALLREDUCE", "0"}},
                 {"allreduce on group 'world' timed out", "silent: ", "rank 2 (last heard"}},
        StopCase{"allreduce_store_host",
                 {"--strategy", "allreduce", "--nproc", "2"},
                 "stop:0:5",
                 {{"LOOM_SHM_ALLREDUCE", "0"}},
                 {"rank 1: timeout: allreduce", "silent: ", "rank 0 (the job's store"}},
        StopCase{"pipeline",
                 {"--strategy", "pipeline", "--nproc", "3"},
                 "stop:2:5",
                 {},
                 {"from rank 2", "timed out", "silent: ", "rank 2 (last heard"}},
        StopCase{"hybrid",
                 {"--strategy", "hybrid", "--dp", "2", "--pp", "2"},
                 "stop:3:5",
                 {},
                 {"timed out", "silent: ", "rank 3 (last heard"}},
        StopCase{"ps_worker", {"--strategy", "ps", "--nproc", "2"}, "stop:1:5", {}, {"parameter server 0", "worker 1"}},
        StopCase{"ps_server",
                 {"--strategy", "ps", "--nproc", "2"},
                 "stop:2:5",
                 {},
                 {"no reply from parameter server 0", "within 5 s"}}),
    [](const auto& info) { return info.param.name; });

}  // namespace
