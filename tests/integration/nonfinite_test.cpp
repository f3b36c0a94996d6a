// --skip-nonfinite through the real CLI and launcher: a step whose gradients are NaN
// (LOOM_FAULT_INJECT=nan fills one rank's batch with NaN) is skipped by every rank alike,
// so each strategy still computes what --strategy single computes with that step
// skipped; without the flag, or after too many such steps in a row, the run stops with
// a named error.
#include <gtest/gtest.h>

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

TEST_F(SkipNonfinite, PipelineStagesAgreeToSkip) {
  const auto path = dir_for("pipeline") + "/m.pt";
  const auto r = job({"--strategy", "pipeline", "--nproc", "2", "--micro-batches", "4", "--skip-nonfinite", "1",
                      "--save", path},
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

}  // namespace
