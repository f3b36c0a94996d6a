#include "loom/train/checkpoint.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include "loom/core/atomic_file.h"
#include "loom/core/error.h"
#include "loom/train/fault_injection.h"
#include "support/temp_path.h"

namespace {

namespace fs = std::filesystem;
using namespace loom::train;

CheckpointPart sample_part() {
  CheckpointPart p;
  p.meta.step = 40;
  p.meta.rank = 1;
  p.meta.world_size = 2;
  p.meta.strategy = "allreduce";
  p.meta.model = "mlp";
  p.meta.weights = {2, 1};
  p.model = {{"0.weight", torch::arange(6, torch::kFloat).reshape({2, 3})}, {"0.bias", torch::ones({2})}};
  p.optimizer = std::string("opt\0state", 9);
  p.rng = at::detail::getDefaultCPUGenerator().get_state();
  return p;
}

std::string fresh(const std::string& name) {
  const auto dir = loom::test::temp_path(name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

TEST(CheckpointPart, RoundTrips) {
  const auto path = fresh("ckpt_roundtrip") + "/p.ckpt";
  write_checkpoint_part(path, sample_part());
  const CheckpointPart back = read_checkpoint_part(path);
  EXPECT_EQ(back.meta.step, 40);
  EXPECT_EQ(back.meta.rank, 1);
  EXPECT_EQ(back.meta.strategy, "allreduce");
  EXPECT_EQ(back.meta.weights, (std::vector<double>{2, 1}));
  ASSERT_EQ(back.model.size(), 2u);
  EXPECT_EQ(back.model[0].first, "0.weight");
  EXPECT_TRUE(torch::equal(back.model[0].second, sample_part().model[0].second));
  EXPECT_EQ(back.optimizer, std::string("opt\0state", 9));
  EXPECT_TRUE(torch::equal(back.rng, sample_part().rng));
  EXPECT_EQ(back.source, path);
}

void expect_checkpoint_error(const std::string& path, const std::string& needle) {
  try {
    read_checkpoint_part(path);
    ADD_FAILURE() << "no error for " << path;
  } catch (const loom::CheckpointError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(path), std::string::npos) << what;
    EXPECT_NE(what.find(needle), std::string::npos) << what;
  }
}

TEST(CheckpointPart, EveryFlippedByteIsDetected) {
  const auto path = fresh("ckpt_flip") + "/p.ckpt";
  write_checkpoint_part(path, sample_part());
  const std::string good = loom::read_file(path);
  // Every 97th byte, header, payload and checksum alike.
  for (size_t i = 0; i < good.size(); i += 97) {
    std::string bad = good;
    bad[i] = static_cast<char>(bad[i] ^ 0x10);
    loom::write_file_atomic(path, bad);
    EXPECT_THROW(read_checkpoint_part(path), loom::CheckpointError) << "byte " << i;
  }
  std::string bad = good;
  bad[good.size() / 2] ^= 1;
  loom::write_file_atomic(path, bad);
  expect_checkpoint_error(path, "checksum mismatch");
}

TEST(CheckpointPart, TruncatedForeignAndMissingFilesAreNamed) {
  const auto dir = fresh("ckpt_bad");
  write_checkpoint_part(dir + "/p.ckpt", sample_part());
  const std::string good = loom::read_file(dir + "/p.ckpt");
  loom::write_file_atomic(dir + "/short.ckpt", good.substr(0, good.size() - 100));
  expect_checkpoint_error(dir + "/short.ckpt", "truncated");
  loom::write_file_atomic(dir + "/foreign.ckpt", "PK\x03\x04 a zip file, not a checkpoint");
  expect_checkpoint_error(dir + "/foreign.ckpt", "not a loom checkpoint");
  expect_checkpoint_error(dir + "/absent.ckpt", "absent.ckpt");
}

TEST(CheckpointDir, OnlyCompleteCheckpointsCount) {
  const CheckpointDir d(fresh("ckpt_dir"));
  EXPECT_FALSE(d.newest_complete().has_value());
  for (int64_t step : {10, 20, 30}) {
    d.prepare(step);
    write_checkpoint_part(d.part_path(step, 0), sample_part());
  }
  d.mark_complete(10, 1);
  d.mark_complete(20, 1);
  // Step 30 was being written when the job died: it does not count.
  EXPECT_EQ(d.newest_complete(), 20);
  d.remove_older_than(20, 0);
  EXPECT_FALSE(fs::exists(d.step_dir(10)));
  EXPECT_TRUE(fs::exists(d.part_path(20, 0)));
  EXPECT_TRUE(fs::exists(d.part_path(30, 0)));  // newer, left for a later checkpoint to replace
  EXPECT_EQ(d.newest_complete(), 20);
}

TEST(CheckpointDir, OtherRanksRemoveOnlyTheirOwnParts) {
  const CheckpointDir d(fresh("ckpt_ranks"));
  d.prepare(5);
  write_checkpoint_part(d.part_path(5, 0), sample_part());
  write_checkpoint_part(d.part_path(5, 1), sample_part());
  d.remove_older_than(6, 1);
  EXPECT_TRUE(fs::exists(d.part_path(5, 0)));
  EXPECT_FALSE(fs::exists(d.part_path(5, 1)));
}

// Rank 0 removes a whole old checkpoint while the other ranks remove their own parts of
// it at the same moment (the trainer's last barrier lets them all go together). A part
// that vanishes under rank 0 must not stop it: std::filesystem::remove_all stops at the
// first file another process removed first, and left step-00000015 behind in CI.
TEST(CheckpointDir, RankZeroRemovesAllWhileTheOthersRemoveTheirParts) {
  const CheckpointDir d(fresh("ckpt_race"));
  int left = 0;
  for (int round = 0; round < 3; ++round) {
    d.prepare(5);
    for (int r = 0; r < 2000; ++r) std::ofstream(d.part_path(5, r)) << "part";
    d.mark_complete(5, 2000);
    // Keep only the parts the directory lists before rank 0's, so rank 0's own part is the
    // last it meets; the others remove theirs from that end backwards while rank 0 goes
    // forwards, and the two meet on a part that is already gone.
    std::vector<int> before_rank0;
    for (const auto& e : fs::directory_iterator(d.step_dir(5))) {
      const std::string name = e.path().filename().string();
      if (name.rfind("rank-", 0) != 0) continue;
      const int r = std::stoi(name.substr(5));
      if (r == 0) break;
      before_rank0.push_back(r);
    }
    for (int r = 1; r < 2000; ++r) {
      if (std::find(before_rank0.begin(), before_rank0.end(), r) == before_rank0.end()) fs::remove(d.part_path(5, r));
    }
    d.prepare(10);
    std::thread others([&] {
      for (auto r = before_rank0.rbegin(); r != before_rank0.rend(); ++r) d.remove_older_than(10, *r);
    });
    d.remove_older_than(10, 0);
    others.join();
    left += fs::exists(d.step_dir(5));
    fs::remove_all(d.step_dir(5));
  }
  EXPECT_EQ(left, 0) << "of 3 rounds left the old checkpoint behind";
}

TEST(CheckpointMismatch, NamesTheSettingThatDiffers) {
  CheckpointMeta a = sample_part().meta, b = a;
  EXPECT_EQ(checkpoint_mismatch(a, b), "");
  b.model = "cnn";
  EXPECT_EQ(checkpoint_mismatch(a, b), "it was written with --model mlp, this run has cnn");
  b = a;
  b.batch_size = 64;
  EXPECT_NE(checkpoint_mismatch(a, b).find("--batch-size"), std::string::npos);
  b = a;
  b.world_size = 3;
  EXPECT_NE(checkpoint_mismatch(a, b).find("written by 2 processes and this run has 3"), std::string::npos);
  a.replicated = b.replicated = true;  // allreduce --sync grads: any size
  EXPECT_EQ(checkpoint_mismatch(a, b), "");
}

TEST(FaultPlan, ParsesActionsAndAttempts) {
  const auto kill = parse_fault_plan("kill:2:7");
  ASSERT_TRUE(kill.has_value());
  EXPECT_EQ(kill->action, "kill");
  EXPECT_EQ(kill->rank, 2);
  EXPECT_EQ(kill->step, 7);
  EXPECT_FALSE(kill->always);
  const auto stop = parse_fault_plan("stop:0:3:always");
  ASSERT_TRUE(stop.has_value());
  EXPECT_EQ(stop->action, "stop");
  EXPECT_TRUE(stop->always);
  const auto nan = parse_fault_plan("nan:1:4");
  ASSERT_TRUE(nan.has_value());
  EXPECT_TRUE(poisons_batch(nan, 1, 4));
  EXPECT_FALSE(poisons_batch(nan, 0, 4));
  EXPECT_FALSE(poisons_batch(nan, 1, 5));
  EXPECT_FALSE(poisons_batch(kill, 2, 7));  // kill acts through maybe_inject_fault
  // The first attempt only, unless :always.
  EXPECT_TRUE(fault_plan_for_attempt("kill:1:2", 0).has_value());
  EXPECT_FALSE(fault_plan_for_attempt("kill:1:2", 1).has_value());
  EXPECT_TRUE(fault_plan_for_attempt("kill:1:2:always", 3).has_value());
  EXPECT_FALSE(parse_fault_plan("").has_value());
  for (const char* bad : {"kill:1", "kill:a:3", "pause:1:2", "kill:1:2:sometimes", "kill:-1:2", "kill:1:2x"}) {
    EXPECT_THROW(parse_fault_plan(bad), loom::ConfigError) << bad;
  }
}

}  // namespace
