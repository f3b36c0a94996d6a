// `loom plan --profile-only` through the real CLI: the CNN on the real Fashion-MNIST
// files, profiled per layer at every batch size a 2-process plan can use, written as
// JSON; bad input is one line and no file.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "support/process.h"
#include "support/train_runs.h"

namespace {

loom::test::RunResult plan(std::vector<std::string> args) {
  loom::test::RunOptions o;
  o.argv = {LOOM_BINARY, "plan"};
  o.argv.insert(o.argv.end(), args.begin(), args.end());
  o.unset_env = loom::test::job_env_names();
  o.timeout = std::chrono::seconds(120);
  return loom::test::run(o);
}

TEST(PlanProfile, TheCnnPerLayerAtEveryBatchAPlanCanUse) {
  const auto dir = loom::test::fresh_dir("plan", "cnn");
  const auto out = dir + "/cnn.json";
  const auto r = plan({"--profile-only", "--model", "cnn", "--data", "fashion-mnist", "--batch-size", "32", "--nproc",
                       "2", "--threads", "1", "--profile-repeats", "2", "--out", out});
  ASSERT_TRUE(r.exited_with(0)) << r.describe();
  std::ifstream in(out);
  const auto j = nlohmann::json::parse(in);
  EXPECT_EQ(j["model"], "cnn");
  EXPECT_EQ(j["sample_shape"], (std::vector<int64_t>{1, 28, 28}));
  EXPECT_EQ(j["threads"], 1);
  EXPECT_EQ(j["batches"], (std::vector<int64_t>{32, 16, 8, 4, 2, 1}));
  int64_t params = 0;
  double step = 0;
  for (const auto& layer : j["layers"]) {
    params += layer["param_count"].get<int64_t>();
    ASSERT_EQ(layer["times"].size(), 6u);
    EXPECT_EQ(layer["times"][0]["batch"], 32);
    step += layer["times"][0]["forward_s"].get<double>() + layer["times"][0]["backward_s"].get<double>();
  }
  EXPECT_EQ(params, j["param_count"].get<int64_t>());
  EXPECT_GT(params, 0);
  EXPECT_GT(step, 0);
  // The logits: 32 rows of 10 classes.
  EXPECT_EQ(j["layers"].back()["times"][0]["output_bytes"], 32 * 10 * 4);
}

TEST(PlanProfile, BadInputIsOneLineAndNoFile) {
  const auto dir = loom::test::fresh_dir("plan", "bad");
  const auto out = dir + "/p.json";
  const auto missing = plan({"--profile-only", "--model", "mlp", "--data", dir + "/nothing.npy", "--out", out});
  EXPECT_TRUE(missing.exited_with(1)) << missing.describe();
  EXPECT_NE(missing.err.find("nothing.npy"), std::string::npos) << missing.describe();
  EXPECT_FALSE(std::filesystem::exists(out));
  const auto not_yet = plan({"--model", "mlp", "--data", "synthetic"});
  EXPECT_TRUE(not_yet.exited_with(1)) << not_yet.describe();
  EXPECT_NE(not_yet.err.find("only --profile-only is available so far"), std::string::npos) << not_yet.describe();
}

}  // namespace
