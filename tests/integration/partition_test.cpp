// Real workers under the launcher train on exactly the samples `loom partition` prints.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "support/process.h"
#include "support/temp_path.h"

namespace {

namespace fs = std::filesystem;

loom::test::RunResult loom(std::vector<std::string> args) {
  loom::test::RunOptions o;
  o.argv = {LOOM_BINARY};
  o.argv.insert(o.argv.end(), args.begin(), args.end());
  o.unset_env = {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"};
  o.timeout = std::chrono::seconds(120);
  return loom::test::run(o);
}

struct Scheme {
  std::string name;
  std::vector<std::string> train_flags, partition_flags;
};

void PrintTo(const Scheme& s, std::ostream* os) { *os << s.name; }

class PartitionUnderLaunch : public ::testing::TestWithParam<Scheme> {};

TEST_P(PartitionUnderLaunch, WorkersReceiveWhatLoomPartitionPrints) {
  const Scheme& s = GetParam();
  const auto dir = fs::path(loom::test::temp_path("partition_" + s.name));
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::vector<std::string> train = {"train",
                                    "--strategy",
                                    "allreduce",
                                    "--nproc",
                                    "3",
                                    "--model",
                                    "mlp",
                                    "--data",
                                    "synthetic",
                                    "--synthetic-samples",
                                    "600",
                                    "--batch-size",
                                    "24",
                                    "--steps",
                                    "6",
                                    "--seed",
                                    "11",
                                    "--no-eval",
                                    "--progress",
                                    "off",
                                    "--timeout",
                                    "60",
                                    "--record-indices",
                                    dir.string()};
  train.insert(train.end(), s.train_flags.begin(), s.train_flags.end());
  const auto t = loom(train);
  ASSERT_TRUE(t.exited_with(0)) << t.describe();

  std::vector<std::string> part = {"partition", "--world-size", "3", "--num-samples", "600", "--batch-size",
                                   "24",        "--epoch",      "0", "--seed",        "11",  "--steps",
                                   "6"};
  part.insert(part.end(), s.partition_flags.begin(), s.partition_flags.end());
  const auto p = loom(part);
  ASSERT_TRUE(p.exited_with(0)) << p.describe();
  const auto printed = nlohmann::json::parse(p.out);
  ASSERT_EQ(printed["ranks"].size(), 3u);
  for (int r = 0; r < 3; ++r) {
    const auto got = nlohmann::json::parse(std::ifstream(dir / ("rank-" + std::to_string(r) + ".json")));
    EXPECT_EQ(got["rank"], r);
    EXPECT_EQ(got["steps"], printed["ranks"][r]["steps"]) << "rank " << r;
    EXPECT_EQ(got["steps"].size(), 6u);
  }
}

INSTANTIATE_TEST_SUITE_P(Schemes, PartitionUnderLaunch,
                         ::testing::Values(Scheme{"strided", {"--partition", "strided"}, {"--scheme", "strided"}},
                                           Scheme{"random", {"--partition", "random"}, {"--scheme", "random"}},
                                           Scheme{"proportional",
                                                  {"--partition", "proportional", "--shard-weights", "3,2,1"},
                                                  {"--scheme", "proportional", "--shard-weights", "3,2,1"}}),
                         [](const auto& info) { return info.param.name; });

}  // namespace
