// --strategy hybrid (dp x pp) through the real CLI and launcher: equivalence with
// --strategy single for both schedules, equal and proportional replicas; the fused file
// in Python and through --init; a dying process; mesh errors.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "support/process.h"
#include "support/train_runs.h"

namespace {

using loom::test::max_abs_diff;

std::string dir_for(const std::string& name) { return loom::test::fresh_dir("hybrid", name); }

// The equivalence job for 10 steps.
loom::test::RunResult loom_train(std::vector<std::string> args, int timeout_s = 180) {
  args.insert(args.end(), {"--steps", "10"});
  return loom::test::train_equivalence_job(std::move(args), timeout_s);
}

class HybridEquivalence : public ::testing::TestWithParam<std::tuple<std::string, bool>> {};

TEST_P(HybridEquivalence, TwoByTwoEqualsSingle) {
  const auto [schedule, proportional] = GetParam();
  const auto dir = dir_for(fmt::format("{}_{}", schedule, proportional ? "prop" : "equal"));
  const auto reference = loom::test::single_reference("hybrid", {"--steps", "10"});
  std::vector<std::string> args{
      "--strategy", "hybrid",     "--dp",   "2",      "--pp",        "2",       "--micro-batches",
      "4",          "--schedule", schedule, "--save", dir + "/h.pt", "--trace", dir + "/t.json"};
  if (proportional) args.insert(args.end(), {"--partition", "proportional", "--shard-weights", "2,1"});
  const auto r = loom_train(args);
  ASSERT_TRUE(r.exited_with(0)) << r.describe();
  EXPECT_NE(r.err.find("hybrid: dp 2 x pp 2: pipelines {0,1} {2,3}; stage groups {0,2} {1,3}"), std::string::npos)
      << r.err;
  EXPECT_LT(max_abs_diff(reference, dir + "/h.pt"), 1e-5);
  // Every rank reduced its stage's gradients across the replicas.
  const auto trace = nlohmann::json::parse(std::ifstream(dir + "/t.json"));
  std::set<int> reduced;
  for (const auto& e : trace["traceEvents"]) {
    if (e["ph"] == "X" && e["name"].get<std::string>().rfind("allreduce bucket", 0) == 0) {
      reduced.insert(e["pid"].get<int>());
    }
  }
  EXPECT_EQ(reduced, (std::set<int>{0, 1, 2, 3}));
}

INSTANTIATE_TEST_SUITE_P(SchedulesAndWeights, HybridEquivalence,
                         ::testing::Combine(::testing::Values("gpipe", "1f1b"), ::testing::Bool()),
                         [](const auto& info) {
                           return fmt::format("{}_{}", std::get<0>(info.param) == "gpipe" ? "gpipe" : "ofob",
                                              std::get<1>(info.param) ? "proportional" : "equal");
                         });

TEST(Hybrid, FusedFileLoadsInPythonAndContinuesTrainingIdenticallyThroughInit) {
  const auto dir = dir_for("init");
  const auto h = loom_train({"--strategy", "hybrid", "--dp", "2", "--pp", "3", "--save", dir + "/h.pt"});
  ASSERT_TRUE(h.exited_with(0)) << h.describe();
  loom::test::RunOptions o;
  o.argv = {"/usr/bin/python3", "-c",
            "import sys, torch\n"
            "d = torch.load(sys.argv[1])\n"
            "print('keys', ','.join(d.keys()))\n",
            dir + "/h.pt"};
  const auto py = loom::test::run(o);
  ASSERT_TRUE(py.exited_with(0)) << py.describe();
  EXPECT_NE(py.out.find("keys 1.weight,1.bias,3.weight,3.bias,5.weight,5.bias"), std::string::npos) << py.out;
  // From that file, single and hybrid continue to the same parameters.
  const auto s = loom_train({"--strategy", "single", "--init", dir + "/h.pt", "--save", dir + "/s2.pt"});
  ASSERT_TRUE(s.exited_with(0)) << s.describe();
  const auto h2 =
      loom_train({"--strategy", "hybrid", "--dp", "2", "--pp", "2", "--init", dir + "/h.pt", "--save", dir + "/h2.pt"});
  ASSERT_TRUE(h2.exited_with(0)) << h2.describe();
  EXPECT_LT(max_abs_diff(dir + "/s2.pt", dir + "/h2.pt"), 1e-5);
  EXPECT_GT(max_abs_diff(dir + "/h.pt", dir + "/h2.pt"), 1e-4);  // it did train
}

TEST(Hybrid, MeshErrorsAreClear) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"--dp", "2", "--pp", "2", "--nproc", "3"}, "--nproc 3 does not match --dp 2 x --pp 2 = 4 processes"},
      {{"--dp", "0", "--pp", "2"}, "--dp must be at least 1, got 0"},
      {{"--dp", "2", "--pp", "7"}, "the model has 6 layers, fewer than the 7 pipeline stages"},
  };
  for (const auto& c : cases) {
    auto args = c.args;
    args.insert(args.begin(), {"--strategy", "hybrid"});
    const auto r = loom_train(args, 90);
    EXPECT_FALSE(r.timed_out) << c.message;
    EXPECT_NE(r.exit_code, 0) << c.message;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << c.message << "\n" << r.err;
  }
}

TEST(Hybrid, AnyDyingProcessEndsTheJobWithANamedError) {
  for (int victim : {0, 1, 2, 3}) {
    const auto r = loom::test::train_with_killed_rank({"--strategy", "hybrid", "--dp", "2", "--pp", "2"}, victim);
    EXPECT_FALSE(r.timed_out) << r.describe();
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find(fmt::format("launch error: rank {} was killed by signal 9 (SIGKILL)", victim)),
              std::string::npos)
        << r.err;
    EXPECT_LT(r.elapsed, std::chrono::seconds(30)) << r.describe();
  }
}

}  // namespace
