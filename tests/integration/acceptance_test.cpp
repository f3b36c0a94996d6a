// The foundation's acceptance checks, run exactly as the issue states them.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "support/process.h"
#include "support/temp_path.h"

namespace {

namespace fs = std::filesystem;

nlohmann::json summary_of(const std::string& path) {
  std::ifstream in(path);
  std::string line, last;
  while (std::getline(in, line)) last = line;
  return nlohmann::json::parse(last);
}

// loom train --strategy single --model cnn --data fashion-mnist --epochs 1 --batch-size 128
//   --lr 0.05 --momentum 0.9 --threads 2 --metrics m.jsonl  =>  test_accuracy >= 0.86
TEST(Acceptance, CnnOnFashionMnistOneEpoch) {
  const auto dir = fs::path(loom::test::temp_path("acceptance_cnn"));
  fs::create_directories(dir);
  const auto metrics = (dir / "m.jsonl").string();
  loom::test::RunOptions o;
  o.argv = {LOOM_BINARY, "train", "--strategy",   "single", "--model", "cnn",  "--data",     "fashion-mnist",
            "--epochs",  "1",     "--batch-size", "128",    "--lr",    "0.05", "--momentum", "0.9",
            "--threads", "2",     "--metrics",    metrics};
  o.unset_env = {"RANK", "WORLD_SIZE"};
  o.timeout = std::chrono::minutes(8);
  const auto r = loom::test::run(o);
  ASSERT_TRUE(r.exited_with(0)) << r.describe();
  const auto s = summary_of(metrics);
  EXPECT_EQ(s["event"], "summary");
  EXPECT_EQ(s["steps"], 60000 / 128);
  EXPECT_GE(s["test_accuracy"].get<double>(), 0.86) << s.dump();
  std::cout << "summary: " << s.dump() << std::endl;
}

// loom run --nproc 2 -- sh -c 'test $RANK = 1 && exit 3; sleep 60'
//   => exits non-zero within 10 seconds and names rank 1
TEST(Acceptance, LauncherStopsTheJobWhenOneRankFails) {
  loom::test::RunOptions o;
  o.argv = {LOOM_BINARY, "run", "--nproc", "2", "--", "sh", "-c", "test $RANK = 1 && exit 3; sleep 60"};
  o.timeout = std::chrono::seconds(30);
  const auto r = loom::test::run(o);
  EXPECT_FALSE(r.timed_out);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_LT(r.elapsed, std::chrono::seconds(10));
  EXPECT_NE(r.err.find("rank 1"), std::string::npos) << r.err;
}

}  // namespace
