// Checkpoints, --resume and --max-restarts through the real CLI and launcher: a job whose
// worker is killed (SIGKILL, at a random step) restarts, resumes from the newest
// checkpoint and ends with the parameters of the uninterrupted run: bitwise for single
// and allreduce, and equal for pipeline and hybrid.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <random>

#include "support/process.h"
#include "support/train_runs.h"

namespace {

namespace fs = std::filesystem;
using loom::test::max_abs_diff;
using loom::test::RunResult;

std::string dir_for(const std::string& name) { return loom::test::fresh_dir("checkpoint", name); }

// The equivalence job (20 steps) with `args`, and LOOM_FAULT_INJECT = `fault` if given.
RunResult job(std::vector<std::string> args, const std::string& fault = "") {
  return loom::test::train_equivalence_job(std::move(args), 240, fault);
}

struct KillCase {
  std::string name;
  std::vector<std::string> args;  // strategy and shape
  int processes;
  double tolerance;  // 0: bitwise
};

class KilledAndRestarted : public ::testing::TestWithParam<KillCase> {};

// A random worker is killed at a random step of a 20-step run checkpointed every 5 steps;
// with --max-restarts 1 the job completes and equals the uninterrupted run.
TEST_P(KilledAndRestarted, EndsWithTheUninterruptedParameters) {
  const KillCase& k = GetParam();
  const auto dir = dir_for(k.name);
  std::mt19937 rng(std::random_device{}());
  const int rank = std::uniform_int_distribution<int>(0, k.processes - 1)(rng);
  const int step = std::uniform_int_distribution<int>(1, 19)(rng);
  SCOPED_TRACE("killed rank " + std::to_string(rank) + " before step " + std::to_string(step));

  auto args = k.args;
  args.insert(args.end(), {"--save", dir + "/plain.pt"});
  const auto plain = job(args);
  ASSERT_TRUE(plain.exited_with(0)) << plain.describe();

  args = k.args;
  args.insert(args.end(), {"--save", dir + "/restarted.pt", "--checkpoint-dir", dir + "/ckpt", "--checkpoint-every",
                           "5", "--max-restarts", "1"});
  const auto restarted = job(args, "kill:" + std::to_string(rank) + ":" + std::to_string(step));
  ASSERT_TRUE(restarted.exited_with(0)) << restarted.describe();
  EXPECT_NE(restarted.err.find("restarting all workers (restart 1 of 1)"), std::string::npos) << restarted.err;
  if (step > 5) EXPECT_NE(restarted.err.find("resuming from"), std::string::npos) << restarted.err;
  const double diff = max_abs_diff(dir + "/plain.pt", dir + "/restarted.pt");
  if (k.tolerance == 0) {
    EXPECT_EQ(diff, 0.0);
  } else {
    EXPECT_LE(diff, k.tolerance);
  }
  // Only the newest checkpoint is kept: the one of the last step.
  std::vector<std::string> kept;
  for (const auto& e : fs::directory_iterator(dir + "/ckpt")) kept.push_back(e.path().filename().string());
  EXPECT_EQ(kept, std::vector<std::string>{"step-00000020"});
}

INSTANTIATE_TEST_SUITE_P(
    Strategies, KilledAndRestarted,
    ::testing::Values(KillCase{"single", {"--strategy", "single"}, 1, 0},
                      KillCase{"allreduce", {"--strategy", "allreduce", "--nproc", "2"}, 2, 0},
                      KillCase{"allreduce3", {"--strategy", "allreduce", "--nproc", "3", "--partition",
                                              "proportional", "--shard-weights", "2,1,1"}, 3, 0},
                      KillCase{"pipeline", {"--strategy", "pipeline", "--nproc", "2", "--micro-batches", "4"}, 2, 1e-6},
                      KillCase{"hybrid", {"--strategy", "hybrid", "--dp", "2", "--pp", "2"}, 4, 1e-6},
                      // Ranks 0-1 are the workers, rank 2 the server (killed when a key reaches the step).
                      KillCase{"ps_sync", {"--strategy", "ps", "--nproc", "2"}, 3, 0}),
    [](const auto& info) { return info.param.name; });

// An interrupted job (no restarts) is finished later by --resume.
TEST(Resume, FinishesAnInterruptedRun) {
  const auto dir = dir_for("resume");
  const auto plain = job({"--save", dir + "/plain.pt"});
  ASSERT_TRUE(plain.exited_with(0)) << plain.describe();
  const std::vector<std::string> ckpt{"--checkpoint-dir", dir + "/ckpt", "--checkpoint-every", "4"};
  auto args = ckpt;
  args.insert(args.end(), {"--save", dir + "/never.pt"});
  const auto killed = job(args, "kill:0:10");
  EXPECT_FALSE(killed.exited_with(0));
  EXPECT_FALSE(fs::exists(dir + "/never.pt"));
  args = ckpt;
  args.insert(args.end(), {"--resume", "--save", dir + "/resumed.pt"});
  const auto resumed = job(args);
  ASSERT_TRUE(resumed.exited_with(0)) << resumed.describe();
  EXPECT_NE(resumed.err.find("after 8 step(s)"), std::string::npos) << resumed.err;
  EXPECT_EQ(max_abs_diff(dir + "/plain.pt", dir + "/resumed.pt"), 0.0);
}

// Allreduce state is the same on every rank, so a 2-worker checkpoint resumes with 3
// workers; the global batches stay the same, so the run still equals --strategy single.
TEST(Resume, AllreduceContinuesWithAnotherNumberOfWorkers) {
  const auto dir = dir_for("resize");
  const auto single = job({"--strategy", "single", "--save", dir + "/single.pt"});
  ASSERT_TRUE(single.exited_with(0)) << single.describe();
  const std::vector<std::string> ckpt{"--strategy", "allreduce", "--checkpoint-dir", dir + "/ckpt", "--checkpoint-every",
                                      "10"};
  auto args = ckpt;
  args.insert(args.end(), {"--nproc", "2", "--steps", "10"});
  const auto first = job(args);
  ASSERT_TRUE(first.exited_with(0)) << first.describe();
  args = ckpt;
  args.insert(args.end(), {"--nproc", "3", "--resume", "--save", dir + "/three.pt"});
  const auto second = job(args);
  ASSERT_TRUE(second.exited_with(0)) << second.describe();
  EXPECT_NE(second.err.find("after 10 step(s)"), std::string::npos) << second.err;
  EXPECT_LT(max_abs_diff(dir + "/single.pt", dir + "/three.pt"), 1e-5);
}

// A worker that dies at the same step on every attempt exhausts --max-restarts: the job
// ends with an error naming the rank and the number of restarts.
TEST(Restarts, GiveUpAfterMaxRestarts) {
  const auto dir = dir_for("give_up");
  const auto r = job({"--strategy", "allreduce", "--nproc", "2", "--checkpoint-dir", dir + "/ckpt", "--max-restarts",
                      "2", "--save", dir + "/m.pt"},
                     "kill:1:3:always");
  EXPECT_FALSE(r.exited_with(0));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("rank 1 was killed by signal 9 (SIGKILL) after 2 restarts"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir + "/m.pt"));
}

// Asynchronous workers may leave (here worker 1 dies at step 4 and the others go on):
// worker 0 checkpoints alone, with the servers, and never waits for the others.
TEST(Checkpoints, AsyncParameterServerCheckpointsWithoutTheWorkersThatLeft) {
  const auto dir = dir_for("ps_async");
  // --timeout 8: the server drops the dead worker after 4 s and stops waiting for it after 8.
  const auto r = job({"--strategy", "ps", "--nproc", "2", "--consistency", "async", "--checkpoint-dir", dir + "/ckpt",
                      "--checkpoint-every", "5", "--save", dir + "/m.pt", "--timeout", "8"},
                     "kill:1:4");
  ASSERT_TRUE(r.exited_with(0)) << r.describe();
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir + "/ckpt/step-00000020")) files.push_back(e.path().filename());
  std::sort(files.begin(), files.end());
  EXPECT_EQ(files, (std::vector<std::string>{"COMPLETE", "ps.server0", "rank-00000.ckpt"}));
  // And a later run resumes from it: every worker reads worker 0's part.
  const auto resumed = job({"--strategy", "ps", "--nproc", "2", "--consistency", "async", "--checkpoint-dir",
                            dir + "/ckpt", "--resume", "--steps", "25"});
  ASSERT_TRUE(resumed.exited_with(0)) << resumed.describe();
  EXPECT_NE(resumed.err.find("after 20 step(s)"), std::string::npos) << resumed.err;
}

// The parameter server's shard goes into the checkpoint beside the workers' parts.
TEST(Checkpoints, ParameterServersSaveTheirShards) {
  const auto dir = dir_for("ps");
  const auto r = job({"--strategy", "ps", "--nproc", "2", "--servers", "2", "--checkpoint-dir", dir + "/ckpt",
                      "--checkpoint-every", "7"});
  ASSERT_TRUE(r.exited_with(0)) << r.describe();
  for (const char* f : {"COMPLETE", "rank-00000.ckpt", "rank-00001.ckpt", "ps.server0", "ps.server1"}) {
    EXPECT_TRUE(fs::exists(dir + "/ckpt/step-00000020/" + f)) << f;
  }
}

}  // namespace
