// Checkpoints, --resume and --max-restarts through the real CLI and launcher: a job whose
// worker is killed (SIGKILL, at a seeded random step before or after the first
// checkpoint) restarts, resumes from the newest checkpoint (or starts again) and ends
// bitwise with the parameters of the uninterrupted run, for every strategy.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <iostream>
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
  int servers = 0;  // the last `servers` ranks are parameter servers
};

void PrintTo(const KillCase& k, std::ostream* os) { *os << k.name; }

// The seed of the kill plans: LOOM_TEST_SEED when set (to replay a failure), else drawn
// and printed, so every failure names the seed that reproduces it.
uint32_t kill_seed() {
  static const uint32_t seed = [] {
    const char* given = std::getenv("LOOM_TEST_SEED");
    return given ? static_cast<uint32_t>(std::stoul(given)) : std::random_device{}();
  }();
  return seed;
}

// Where the kill falls, against checkpoints every 5 steps of a 20-step run.
enum class When { before_first_checkpoint, after_a_checkpoint };
void PrintTo(When w, std::ostream* os) { *os << (w == When::before_first_checkpoint ? "before" : "after"); }

class KilledAndRestarted : public ::testing::TestWithParam<std::tuple<KillCase, When>> {};

// A random worker is killed at a random step of a 20-step run checkpointed every 5 steps,
// once before the first checkpoint (the restarted job starts from the beginning) and
// once after one (it resumes from the newest); with --max-restarts 1 the job completes
// and ends bitwise equal to the uninterrupted run, for every strategy.
TEST_P(KilledAndRestarted, EndsBitwiseWithTheUninterruptedParameters) {
  const auto& [k, when] = GetParam();
  const bool before = when == When::before_first_checkpoint;
  std::mt19937 rng(kill_seed() ^ static_cast<uint32_t>(std::hash<std::string>{}(k.name)) ^ (before ? 1u : 2u));
  const int rank = std::uniform_int_distribution<int>(0, k.processes - 1)(rng);
  // The kill comes before 0-based step `step`, after `step` steps. Before: steps 1-4
  // (nothing saved yet). After: 6-19 but not a multiple of 5, so which checkpoint is the
  // newest complete one is certain (5, 10 or 15).
  int step = 0;
  if (before) {
    step = std::uniform_int_distribution<int>(1, 4)(rng);
  } else {
    do step = std::uniform_int_distribution<int>(6, 19)(rng);
    while (step % 5 == 0);
  }
  const std::string plan = "rank " + std::to_string(rank) + " killed before step " + std::to_string(step) +
                           " (LOOM_TEST_SEED=" + std::to_string(kill_seed()) + " replays it)";
  std::cout << k.name << ": " << plan << std::endl;
  SCOPED_TRACE(plan);
  const auto dir = dir_for(k.name + (before ? "_before" : "_after"));

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
  // Which path the restarted job took (the trainer's own line; the launcher's "restart 1:
  // resuming from DIR if it holds a checkpoint" is printed either way).
  const auto restart_at = restarted.err.find("restarting all workers");
  const std::string after_restart = restarted.err.substr(restart_at == std::string::npos ? 0 : restart_at);
  if (before) {
    EXPECT_EQ(after_restart.find("info: resuming from"), std::string::npos) << restarted.err;
    EXPECT_NE(after_restart.find("yet: starting from the beginning"), std::string::npos) << restarted.err;
  } else {
    const bool server = rank >= k.processes - k.servers;
    // A server counts its steps by the pushes it has applied, which may run ahead of the
    // workers' checkpoint: the newest checkpoint is then any of those before the kill.
    const std::string expected = "after " + std::to_string(step / 5 * 5) + " step(s)";
    EXPECT_NE(after_restart.find(server ? "info: resuming from" : expected), std::string::npos) << expected << "\n"
                                                                                                << restarted.err;
  }
  EXPECT_EQ(max_abs_diff(dir + "/plain.pt", dir + "/restarted.pt"), 0.0);
  // Only the newest checkpoint is kept: the one of the last step.
  std::vector<std::string> kept;
  for (const auto& e : fs::directory_iterator(dir + "/ckpt")) kept.push_back(e.path().filename().string());
  EXPECT_EQ(kept, std::vector<std::string>{"step-00000020"});
}

INSTANTIATE_TEST_SUITE_P(
    Strategies, KilledAndRestarted,
    ::testing::Combine(
        ::testing::Values(KillCase{"single", {"--strategy", "single"}, 1},
                          KillCase{"allreduce", {"--strategy", "allreduce", "--nproc", "2"}, 2},
                          KillCase{"allreduce3",
                                   {"--strategy", "allreduce", "--nproc", "3", "--partition", "proportional",
                                    "--shard-weights", "2,1,1"},
                                   3},
                          KillCase{"pipeline", {"--strategy", "pipeline", "--nproc", "2", "--micro-batches", "4"}, 2},
                          KillCase{"hybrid", {"--strategy", "hybrid", "--dp", "2", "--pp", "2"}, 4},
                          // Ranks 0-1 are the workers, rank 2 the server (killed when a key reaches the step).
                          KillCase{"ps_sync", {"--strategy", "ps", "--nproc", "2"}, 3, 1}),
        ::testing::Values(When::before_first_checkpoint, When::after_a_checkpoint)),
    [](const auto& info) {
      return std::get<0>(info.param).name + (std::get<1>(info.param) == When::before_first_checkpoint
                                                 ? "_BeforeFirstCheckpoint"
                                                 : "_AfterACheckpoint");
    });

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
  const std::vector<std::string> ckpt{"--strategy",  "allreduce",          "--checkpoint-dir",
                                      dir + "/ckpt", "--checkpoint-every", "10"};
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
