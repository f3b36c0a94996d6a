// --shard-weights auto moves samples from a slow worker to a fast one, and the result
// still equals single-process training (the global batch does not change).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "support/process.h"
#include "support/temp_path.h"

namespace {

namespace fs = std::filesystem;

TEST(AutoWeights, ASlowWorkerGetsFewerSamples) {
  const auto dir = fs::path(loom::test::temp_path("auto_weights"));
  fs::remove_all(dir);
  fs::create_directories(dir);
  loom::test::RunOptions o;
  o.argv = {LOOM_BINARY, "train", "--strategy", "allreduce", "--nproc", "2", "--model", "cnn", "--data", "synthetic",
            "--synthetic-samples", "4096", "--batch-size", "64", "--steps", "45", "--partition", "proportional",
            "--shard-weights", "auto", "--bench-slowdown", "1:3", "--no-eval", "--progress", "off",
            "--timeout", "60", "--record-indices", dir.string()};
  o.unset_env = {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"};
  o.timeout = std::chrono::seconds(240);
  const auto r = loom::test::run(o);
  ASSERT_TRUE(r.exited_with(0)) << r.describe();
  const auto fast = nlohmann::json::parse(std::ifstream(dir / "rank-0.json"))["steps"];
  const auto slow = nlohmann::json::parse(std::ifstream(dir / "rank-1.json"))["steps"];
  ASSERT_EQ(fast.size(), 45u);
  // Equal parts until the first re-weighting, then the 3x slower worker gets clearly less.
  EXPECT_EQ(fast[0].size(), 32u);
  EXPECT_EQ(slow[0].size(), 32u);
  EXPECT_EQ(fast[44].size() + slow[44].size(), 64u);
  EXPECT_LT(slow[44].size(), 24u) << "fast " << fast[44].size() << " slow " << slow[44].size();
}

}  // namespace
