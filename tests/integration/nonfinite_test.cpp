// --skip-nonfinite through the real CLI and launcher: a step whose gradients are NaN
// (LOOM_FAULT_INJECT=nan fills one rank's batch with NaN) is skipped by every rank alike,
// so each strategy still computes what --strategy single computes with that step
// skipped; without the flag, or after too many such steps in a row, the run stops with
// a named error.
#include <gtest/gtest.h>

#include <filesystem>

#include "support/process.h"
#include "support/train_runs.h"

namespace {

using loom::test::max_abs_diff;
using loom::test::RunResult;

std::string dir_for(const std::string& name) { return loom::test::fresh_dir("nonfinite", name); }

// The equivalence job (20 steps) with `args`, and LOOM_FAULT_INJECT = `fault` if given.
RunResult job(std::vector<std::string> args, const std::string& fault = "") {
  return loom::test::train_equivalence_job(std::move(args), 240, fault);
}

// Single, with step 8 (0-based 7) poisoned and skipped: the reference of every case.
class SkipNonfinite : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const auto dir = dir_for("reference");
    reference_ = dir + "/single-skipped.pt";
    const auto r = job({"--strategy", "single", "--skip-nonfinite", "1", "--save", reference_}, "nan:0:7");
    ASSERT_TRUE(r.exited_with(0)) << r.describe();
    ASSERT_NE(r.err.find("step 8: gradients not finite (loss nan): skipped, no update"), std::string::npos) << r.err;
    // The step really was skipped: the result differs from the run that took it.
    const auto plain = job({"--strategy", "single", "--save", dir + "/single.pt"});
    ASSERT_TRUE(plain.exited_with(0)) << plain.describe();
    ASSERT_GT(max_abs_diff(dir + "/single.pt", reference_), 1e-4);
  }
  static std::string reference_;
};
std::string SkipNonfinite::reference_;

TEST_F(SkipNonfinite, AllreduceSkipsOnEveryRankWhenOneRankSeesNan) {
  const auto path = dir_for("allreduce") + "/m.pt";
  const auto r = job({"--strategy", "allreduce", "--nproc", "2", "--skip-nonfinite", "1", "--save", path}, "nan:1:7");
  ASSERT_TRUE(r.exited_with(0)) << r.describe();
  EXPECT_LT(max_abs_diff(reference_, path), 1e-5);
}

// --zero 1: no rank steps its range and none all-gathers, so the ranks stay in step.
// --zero 2: each rank holds only its range of the gradients, checks that, and the ranks
// agree.
TEST_F(SkipNonfinite, ZeroShardedOptimizerSkipsOnEveryRank) {
  for (const std::string stage : {"1", "2"}) {
    const auto path = dir_for("zero" + stage) + "/m.pt";
    const auto r =
        job({"--strategy", "allreduce", "--nproc", "2", "--zero", stage, "--skip-nonfinite", "1", "--save", path},
            "nan:1:7");
    ASSERT_TRUE(r.exited_with(0)) << "--zero " << stage << ": " << r.describe();
    EXPECT_LT(max_abs_diff(reference_, path), 1e-5) << "--zero " << stage;
  }
}

TEST_F(SkipNonfinite, PipelineStagesAgreeToSkip) {
  const auto path = dir_for("pipeline") + "/m.pt";
  const auto r =
      job({"--strategy", "pipeline", "--nproc", "2", "--micro-batches", "4", "--skip-nonfinite", "1", "--save", path},
          "nan:0:7");
  ASSERT_TRUE(r.exited_with(0)) << r.describe();
  EXPECT_LT(max_abs_diff(reference_, path), 1e-5);
}

TEST_F(SkipNonfinite, HybridMeshAgreesToSkip) {
  const auto path = dir_for("hybrid") + "/m.pt";
  const auto r = job({"--strategy", "hybrid", "--dp", "2", "--pp", "2", "--nproc", "4", "--micro-batches", "2",
                      "--skip-nonfinite", "1", "--save", path},
                     "nan:2:7");  // replica 1, stage 0: the stage that reads inputs
  ASSERT_TRUE(r.exited_with(0)) << r.describe();
  EXPECT_LT(max_abs_diff(reference_, path), 1e-5);
}

TEST(NonfiniteStops, WithoutTheFlagTheRunStopsNamingTheStepAndTheFlag) {
  const auto r = job({"--strategy", "allreduce", "--nproc", "2"}, "nan:1:7");
  EXPECT_FALSE(r.exited_with(0)) << r.describe();
  EXPECT_NE(r.err.find("the training loss became nan at step 8"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--skip-nonfinite N"), std::string::npos) << r.err;
}

TEST(NonfiniteStops, TooManyInARowStopNamingTheLimit) {
  // lr 1e30 blows the parameters up in one step; every later step is NaN.
  const auto r = job({"--strategy", "single", "--lr", "1e30", "--skip-nonfinite", "2"});
  EXPECT_FALSE(r.exited_with(0)) << r.describe();
  EXPECT_NE(r.err.find("the gradients were not finite for 3 steps in a row"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--skip-nonfinite 2 allows 2"), std::string::npos) << r.err;
}

// A final model with a NaN is not written: one named error, a non-zero exit, no file.
// LOOM_FAULT_INJECT=nanmodel fills the first parameter of the model a rank holds with NaN
// after the last step (no forward sees it, so only --save's own check can).
class SaveNonfinite : public ::testing::TestWithParam<std::pair<std::string, std::vector<std::string>>> {};

TEST_P(SaveNonfinite, IsRefusedUnlessAskedForAndThenDiffersInfinitelyFromTheReference) {
  const auto& [name, args] = GetParam();
  const auto dir = dir_for("save_" + name);
  auto refused_args = args;
  refused_args.insert(refused_args.end(), {"--save", dir + "/refused.pt"});
  const auto refused = job(refused_args, "nanmodel:0:19");
  EXPECT_FALSE(refused.timed_out) << refused.describe();
  EXPECT_NE(refused.exit_code, 0) << refused.describe();
  EXPECT_EQ(refused.signal, 0) << refused.describe();
  EXPECT_NE(refused.err.find("--save " + dir +
                             "/refused.pt: nothing written: the final model is not finite ('1.weight'"
                             " holds 200704 NaN or infinite values of 200704); pass --save-nonfinite"),
            std::string::npos)
      << refused.err;
  EXPECT_FALSE(std::filesystem::exists(dir + "/refused.pt"));
  // Asked for, it is written; and the tests' comparison sees the NaN (an infinite
  // difference, not the 0 that std::max(0.0, NaN) gives).
  auto written_args = args;
  written_args.insert(written_args.end(), {"--save", dir + "/written.pt", "--save-nonfinite"});
  const auto written = job(written_args, "nanmodel:0:19");
  ASSERT_TRUE(written.exited_with(0)) << written.describe();
  auto clean_args = args;
  clean_args.insert(clean_args.end(), {"--save", dir + "/clean.pt"});
  const auto clean = job(clean_args);
  ASSERT_TRUE(clean.exited_with(0)) << clean.describe();
  EXPECT_EQ(max_abs_diff(dir + "/clean.pt", dir + "/written.pt"), loom::test::kInfiniteDifference);
}

INSTANTIATE_TEST_SUITE_P(
    Strategies, SaveNonfinite,
    ::testing::Values(
        std::make_pair(std::string("single"), std::vector<std::string>{"--strategy", "single"}),
        std::make_pair(std::string("allreduce"), std::vector<std::string>{"--strategy", "allreduce", "--nproc", "2"}),
        // The fused model: stage 0 (rank 0) holds the poisoned layer.
        std::make_pair(std::string("pipeline"), std::vector<std::string>{"--strategy", "pipeline", "--nproc", "2"})),
    [](const auto& info) { return info.param.first; });

}  // namespace
