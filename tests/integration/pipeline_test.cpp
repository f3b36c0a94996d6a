// --strategy pipeline through the real CLI and launcher: the equivalence contract for
// P = 2, 3 stages x M = 1, 2, 4, 8 micro-batches x both schedules, the fused model file,
// splits, the trace, and failures.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "support/process.h"
#include "support/train_runs.h"

namespace {

using loom::test::max_abs_diff;

std::string dir_for(const std::string& name) { return loom::test::fresh_dir("pipeline", name); }

// The equivalence job for 10 steps.
loom::test::RunResult loom_train(std::vector<std::string> args, int timeout_s = 180) {
  args.insert(args.end(), {"--steps", "10"});
  return loom::test::train_equivalence_job(std::move(args), timeout_s);
}

class PipelineEquivalence : public ::testing::TestWithParam<std::tuple<int, int, std::string>> {
 protected:
  // 10 steps, like the runs under test.
  static void SetUpTestSuite() { reference_ = loom::test::single_reference("pipeline", {"--steps", "10"}); }
  static std::string reference_;
};
std::string PipelineEquivalence::reference_;

TEST_P(PipelineEquivalence, SavedModelEqualsSingle) {
  const auto [P, M, schedule] = GetParam();
  const auto dir = dir_for(fmt::format("p{}_m{}_{}", P, M, schedule));
  const auto r = loom_train({"--strategy", "pipeline", "--nproc", std::to_string(P), "--micro-batches",
                             std::to_string(M), "--schedule", schedule, "--save", dir + "/m.pt"});
  ASSERT_TRUE(r.exited_with(0)) << r.describe();
  EXPECT_LT(max_abs_diff(reference_, dir + "/m.pt"), 1e-5);
  if (M < P) {
    EXPECT_NE(r.err.find("leaves bubbles"), std::string::npos) << r.err;
  }
}

INSTANTIATE_TEST_SUITE_P(StagesMicroBatchesSchedules, PipelineEquivalence,
                         ::testing::Combine(::testing::Values(2, 3), ::testing::Values(1, 2, 4, 8),
                                            ::testing::Values("gpipe", "1f1b")),
                         [](const auto& info) {
                           return fmt::format("P{}_M{}_{}", std::get<0>(info.param), std::get<1>(info.param),
                                              std::get<2>(info.param) == "gpipe" ? "gpipe" : "ofob");
                         });

TEST(Pipeline, FusedModelLoadsInPythonWithTheSingleProcessKeys) {
  const auto dir = dir_for("python");
  auto single = loom_train({"--strategy", "single", "--save", dir + "/s.pt"});
  ASSERT_TRUE(single.exited_with(0)) << single.describe();
  auto pipe = loom_train(
      {"--strategy", "pipeline", "--nproc", "3", "--split", "1,3,2", "--schedule", "gpipe", "--save", dir + "/p.pt"});
  ASSERT_TRUE(pipe.exited_with(0)) << pipe.describe();
  EXPECT_NE(pipe.err.find("split 1,3,2 = layers 0-0"), std::string::npos) << pipe.err;
  loom::test::RunOptions o;
  o.argv = {"/usr/bin/python3", "-c",
            "import sys, torch\n"
            "s, p = torch.load(sys.argv[1]), torch.load(sys.argv[2])\n"
            "assert list(s.keys()) == list(p.keys()), (list(s.keys()), list(p.keys()))\n"
            // NaN is never < 1e-5: a NaN anywhere lands in `far`
            "far = [k for k in s if not (s[k] - p[k]).abs().max().item() < 1e-5]\n"
            "assert not far, far\n"
            "print('keys', ','.join(p.keys()))\n",
            dir + "/s.pt", dir + "/p.pt"};
  const auto r = loom::test::run(o);
  ASSERT_TRUE(r.exited_with(0)) << r.describe();
  EXPECT_NE(r.out.find("keys 1.weight,1.bias,3.weight,3.bias,5.weight,5.bias"), std::string::npos) << r.out;
}

TEST(Pipeline, TraceShowsEveryStagesMicroBatchesMessagesAndWaits) {
  const auto dir = dir_for("trace");
  const auto r =
      loom_train({"--strategy", "pipeline", "--nproc", "2", "--micro-batches", "4", "--trace", dir + "/t.json"});
  ASSERT_TRUE(r.exited_with(0)) << r.describe();
  const auto trace = nlohmann::json::parse(std::ifstream(dir + "/t.json"));
  std::set<std::pair<int, std::string>> seen;
  for (const auto& e : trace["traceEvents"]) {
    if (e["ph"] == "X") seen.insert({e["pid"].get<int>(), e["name"].get<std::string>()});
  }
  for (const char* name : {"step", "forward 3", "backward 3", "send act 3", "recv grad 3", "optimizer"}) {
    EXPECT_TRUE(seen.count({0, name})) << name;
  }
  for (const char* name : {"step", "forward 3", "backward 3", "recv act 3", "send grad 3", "wait act 0"}) {
    EXPECT_TRUE(seen.count({1, name})) << name;
  }
}

TEST(Pipeline, ExplicitAndBalancedSplitsAreLoggedAndRepeatable) {
  // A model where the two cuts differ. deep-mlp --depth 4 --width 512 on 784 inputs has 8
  // layers: flatten, L(784,512) = 401,920 parameters, relu, L(512,512) = 262,656, relu,
  // L(512,512) = 262,656, relu, L(512,10) = 5,130. uniform cuts 3,3,2, whose middle stage
  // holds both 512x512 layers (525,312). params keeps every stage within the largest
  // single layer (401,920): one 512x512 layer per later stage, and of the two such splits
  // nearest to uniform (2,3,3 and 3,2,3) the earlier cut, 2,3,3.
  const std::vector<std::string> model{"--model", "deep-mlp", "--depth", "4", "--width", "512"};
  for (const std::string balance : {"uniform", "params"}) {
    std::string first;
    for (int run = 0; run < 2; ++run) {
      auto args = model;
      args.insert(args.end(), {"--strategy", "pipeline", "--nproc", "3", "--balance", balance, "--steps", "2"});
      const auto r = loom_train(args);
      ASSERT_TRUE(r.exited_with(0)) << r.describe();
      const auto at = r.err.find("split ");
      ASSERT_NE(at, std::string::npos) << r.err;
      const auto line = r.err.substr(at, r.err.find('\n', at) - at);
      if (run == 0) first = line;
      EXPECT_EQ(line, first);
    }
    EXPECT_EQ(first,
              balance == "uniform"
                  ? "split 3,3,2 = layers 0-2 (4.019e+05 params) | 3-5 (5.253e+05 params) | 6-7 (5130 params)"
                  : "split 2,3,3 = layers 0-1 (4.019e+05 params) | 2-4 (2.627e+05 params) | 5-7 (2.678e+05 params)")
        << balance;
  }
  const auto t = loom_train({"--strategy", "pipeline", "--nproc", "2", "--balance", "time", "--steps", "2"});
  ASSERT_TRUE(t.exited_with(0)) << t.describe();
  EXPECT_NE(t.err.find("by --balance time: split"), std::string::npos) << t.err;
  EXPECT_NE(t.err.find(" ms)"), std::string::npos) << t.err;
}

TEST(Pipeline, BadSplitsAndSizesAreClearErrors) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"--nproc", "2", "--split", "4,3"}, "--split '4,3' covers 7 layers but the model has 6"},
      {{"--nproc", "2", "--split", "6"}, "--split '6' has 1 stage(s) but the pipeline has 2"},
      {{"--nproc", "7"}, "the model has 6 layers, fewer than the 7 pipeline stages"},
      {{"--nproc", "2", "--micro-batches", "0"}, "--micro-batches must be at least 1, got 0"},
      {{"--nproc", "2", "--micro-batches", "64"}, "--micro-batches 64 exceeds --batch-size 48"},
      {{"--nproc", "2", "--schedule", "zigzag"}, "--schedule: unknown value 'zigzag'"},
      {{"--nproc", "2", "--balance", "flops"}, "--balance: unknown value 'flops'"},
  };
  for (const auto& c : cases) {
    auto args = c.args;
    args.insert(args.begin(), {"--strategy", "pipeline"});
    const auto r = loom_train(args, 60);
    EXPECT_FALSE(r.timed_out) << c.message;
    EXPECT_NE(r.exit_code, 0) << c.message;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << c.message << "\n" << r.err;
  }
}

TEST(Pipeline, ADeadStageEndsTheJobWithANamedError) {
  const auto r = loom::test::train_with_killed_rank({"--strategy", "pipeline", "--nproc", "3"}, 1);
  EXPECT_FALSE(r.timed_out) << r.describe();
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("launch error: rank 1 was killed by signal 9 (SIGKILL)"), std::string::npos) << r.err;
  EXPECT_LT(r.elapsed, std::chrono::seconds(30)) << r.describe();
}

}  // namespace
