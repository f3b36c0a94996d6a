// Shared by the integration tests that run `loom train` jobs and compare what they save:
// a fresh directory per test, the equivalence job (the same small MLP run, seed and
// global batch for every strategy), and model-file comparison.
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "loom/train/model_io.h"
#include "support/process.h"
#include "support/temp_path.h"
#include "support/tensor_compare.h"

namespace loom::test {

// An empty directory of this test process, named after "<prefix>_<name>" (temp_path).
inline std::string fresh_dir(const std::string& prefix, const std::string& name) {
  const std::filesystem::path dir = temp_path(prefix + "_" + name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

// The launcher's variables, unset so an outer job cannot leak into the one under test.
inline std::vector<std::string> job_env_names() {
  return {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"};
}

// `loom train` with the equivalence settings (MLP, synthetic data, global batch 48,
// SGD lr 0.05 momentum 0.9, 20 steps, seed 3) followed by `args`, which may override them.
// `fault`: LOOM_FAULT_INJECT for the job (train/fault_injection.h), if not empty;
// `env`: more variables for the job.
inline RunResult train_equivalence_job(std::vector<std::string> args, int timeout_s = 180,
                                       const std::string& fault = "",
                                       std::vector<std::pair<std::string, std::string>> env = {}) {
  RunOptions o;
  o.env = std::move(env);
  if (!fault.empty()) o.env.emplace_back("LOOM_FAULT_INJECT", fault);
  o.argv = {LOOM_BINARY,           "train",      "--model",      "mlp",       "--data", "synthetic",
            "--synthetic-samples", "2048",       "--batch-size", "48",        "--lr",   "0.05",
            "--momentum",          "0.9",        "--steps",      "20",        "--seed", "3",
            "--no-eval",           "--progress", "off",          "--timeout", "60"};
  o.argv.insert(o.argv.end(), args.begin(), args.end());
  o.unset_env = job_env_names();
  o.timeout = std::chrono::seconds(timeout_s);
  return run(o);
}

// `--strategy single` with the equivalence settings (followed by `extra`), saved in a
// fresh directory of its own per test process (ctest runs tests in parallel, each in
// its own process): the reference a distributed run is compared with.
inline std::string single_reference(const std::string& prefix, std::vector<std::string> extra = {}) {
  const auto path = fresh_dir(prefix, "reference") + "/single.pt";
  std::vector<std::string> args{"--strategy", "single", "--save", path};
  args.insert(args.end(), extra.begin(), extra.end());
  const auto r = train_equivalence_job(args);
  EXPECT_TRUE(r.exited_with(0)) << r.describe();
  return path;
}

// A small `loom train` job (the MLP on synthetic data, 50 steps) followed by `args`,
// with LOOM_FAULT_INJECT killing `rank` at step 3: for "a dying process ends the job
// with a named error" tests.
inline RunResult train_with_killed_rank(std::vector<std::string> args, int rank) {
  RunOptions o;
  o.argv = {LOOM_BINARY,    "train", "--model",   "mlp",        "--data", "synthetic", "--steps", "50",
            "--batch-size", "48",    "--no-eval", "--progress", "off",    "--timeout", "30"};
  o.argv.insert(o.argv.end(), args.begin(), args.end());
  o.env = {{"LOOM_FAULT_INJECT", "kill:" + std::to_string(rank) + ":3"}};
  o.unset_env = job_env_names();
  o.timeout = std::chrono::seconds(90);
  return run(o);
}

// The largest absolute difference between two model files, compared by key
// (support/tensor_compare.h: NaN, infinity, a shape or a key on one side only are an
// infinite difference). Keys must also come in the same order (the model-file contract).
inline double max_abs_diff(const std::string& a, const std::string& b) {
  const auto x = train::load_model_file(a), y = train::load_model_file(b);
  EXPECT_EQ(x.size(), y.size());
  for (size_t i = 0; i < x.size() && i < y.size(); ++i) EXPECT_EQ(x[i].first, y[i].first);
  return max_abs_diff(x, y);
}

// The last record of a --metrics file (the summary).
inline nlohmann::json summary_of(const std::string& metrics) {
  std::ifstream in(metrics);
  std::string line, last;
  while (std::getline(in, line)) last = line;
  return nlohmann::json::parse(last);
}

}  // namespace loom::test
