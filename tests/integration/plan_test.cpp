// `loom plan` and `loom train --strategy auto` through the real CLI:
// - --profile-only: the CNN on the real Fashion-MNIST files, profiled per layer at every
//   batch size a 2-process plan can use, written as JSON; bad input is one line and no file.
// - the ranked plans (--json) on a hand-written cluster file: every strategy, the contract's
//   keys, and the best plan's `args` run as they are by `loom train`, whose metrics then
//   record the prediction; the table names the best plan's command.
// - --strategy auto runs the plan it chose and says so in one line.
// - --verify runs the best plan and prints predicted against measured.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
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
  const auto chosen = plan({"--model", "mlp", "--data", "synthetic", "--strategy", "allreduce"});
  EXPECT_TRUE(chosen.exited_with(1)) << chosen.describe();
  EXPECT_NE(chosen.err.find("loom plan chooses the strategy"), std::string::npos) << chosen.describe();
  const auto unknown = plan({"--model", "mlp", "--data", "synthetic", "--strategies", "allreduce,magic"});
  EXPECT_TRUE(unknown.exited_with(1)) << unknown.describe();
  EXPECT_NE(unknown.err.find("unknown strategy 'magic'"), std::string::npos) << unknown.describe();
  // The benchmark aid's spec, checked before anything is measured; and it applies to
  // single, allreduce and ps only.
  const auto slow = plan({"--model", "mlp", "--data", "synthetic", "--bench-slowdown", "1:x"});
  EXPECT_TRUE(slow.exited_with(1)) << slow.describe();
  EXPECT_NE(slow.err.find("'1:x' is not RANK:FACTOR"), std::string::npos) << slow.describe();
  EXPECT_EQ(slow.err.find("profiled"), std::string::npos) << slow.describe();
  const auto piped =
      plan({"--model", "mlp", "--data", "synthetic", "--bench-slowdown", "1:2", "--strategies", "pipeline,hybrid"});
  EXPECT_TRUE(piped.exited_with(1)) << piped.describe();
  EXPECT_NE(piped.err.find("--bench-slowdown applies to single, allreduce and ps only"), std::string::npos)
      << piped.describe();
  const auto cluster = dir + "/bad.toml";
  std::ofstream(cluster) << "[cluster]\nnodes = 1\nprocessez_per_node = 2\n";
  const auto bad = plan({"--model", "mlp", "--data", "synthetic", "--cluster", cluster});
  EXPECT_TRUE(bad.exited_with(1)) << bad.describe();
  EXPECT_NE(bad.err.find("processez_per_node"), std::string::npos) << bad.describe();
  EXPECT_NE(bad.err.find(cluster), std::string::npos) << bad.describe();
}

// One node of 4 processes over 2 cores, links of loopback speed, no measured tables: the
// cost model's formulas only (no calibration, so the test is fast).
std::string cluster_file(const std::string& dir) {
  const auto path = dir + "/cluster.toml";
  std::ofstream(path) << "[cluster]\nname = \"test node\"\nnodes = 1\nprocesses_per_node = 4\ncores_per_node = 2\n"
                         "memory_per_node_gib = 8\nprocess_base_mib = 200\n[links.intra]\nlatency_us = 50\n"
                         "bandwidth_gbs = 2\n[links.inter]\nlatency_us = 50\nbandwidth_gbs = 2\n";
  return path;
}

const std::vector<std::string> kJob{"--model",
                                    "deep-mlp",
                                    "--width",
                                    "32",
                                    "--depth",
                                    "4",
                                    "--data",
                                    "synthetic",
                                    "--synthetic-samples",
                                    "512",
                                    "--batch-size",
                                    "32",
                                    "--threads",
                                    "1",
                                    "--profile-repeats",
                                    "2"};

std::vector<std::string> with(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

TEST(Plan, RankedPlansAsJsonWhoseArgsRunAsTheyAre) {
  const auto dir = loom::test::fresh_dir("plan", "json");
  const auto r = plan(with(kJob, {"--nproc", "4", "--cluster", cluster_file(dir), "--json", "--log-level", "warn"}));
  ASSERT_TRUE(r.exited_with(0)) << r.describe();
  const auto plans = nlohmann::json::parse(r.out);
  ASSERT_TRUE(plans.is_array());
  std::set<std::string> strategies;
  double previous = 1e300;
  for (const auto& p : plans) {
    for (const char* key :
         {"strategy", "args", "predicted_samples_per_s", "predicted_step_s", "predicted_memory_bytes", "fits"}) {
      ASSERT_TRUE(p.contains(key)) << key << " in " << p.dump();
    }
    strategies.insert(p["strategy"].get<std::string>());
    EXPECT_GT(p["predicted_samples_per_s"].get<double>(), 0) << p.dump();
    EXPECT_NEAR(p["predicted_samples_per_s"].get<double>() * p["predicted_step_s"].get<double>(), 32.0, 1e-6);
    EXPECT_LE(p["processes"].get<int>(), 4);
    EXPECT_TRUE(p["fits"].get<bool>());
    EXPECT_LE(p["predicted_samples_per_s"].get<double>(), previous) << "not ranked: " << p.dump();
    previous = p["predicted_samples_per_s"].get<double>();
  }
  EXPECT_EQ(strategies, (std::set<std::string>{"single", "allreduce", "ps", "pipeline", "hybrid"}));
  // The best plan of each strategy runs as it is, on the same model and data.
  for (const char* strategy : {"allreduce", "pipeline"}) {
    const auto it = std::find_if(plans.begin(), plans.end(), [&](const auto& p) { return p["strategy"] == strategy; });
    ASSERT_NE(it, plans.end());
    const auto metrics = dir + "/" + strategy + ".jsonl";
    loom::test::RunOptions o;
    o.argv = {LOOM_BINARY, "train"};
    for (const auto& a : (*it)["args"]) o.argv.push_back(a.get<std::string>());
    o.argv = with(o.argv, {"--steps", "4", "--no-eval", "--metrics", metrics, "--progress", "off"});
    o.unset_env = loom::test::job_env_names();
    o.timeout = std::chrono::seconds(120);
    const auto run = loom::test::run(o);
    ASSERT_TRUE(run.exited_with(0)) << run.describe();
    std::ifstream in(metrics);
    std::string line, last;
    while (std::getline(in, line)) last = line;
    const auto summary = nlohmann::json::parse(last);
    EXPECT_EQ(summary["strategy"], strategy);
    EXPECT_EQ(summary["world_size"], (*it)["processes"]);
    EXPECT_NEAR(summary["predicted_samples_per_s"].get<double>(), (*it)["predicted_samples_per_s"].get<double>(), 0.1);
  }
}

TEST(Plan, TheTableEndsWithTheBestPlansCommand) {
  const auto dir = loom::test::fresh_dir("plan", "table");
  const auto r = plan(with(kJob, {"--nproc", "2", "--cluster", cluster_file(dir), "--top", "5", "--epochs", "3"}));
  ASSERT_TRUE(r.exited_with(0)) << r.describe();
  EXPECT_NE(r.out.find("test node"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("samples/s"), std::string::npos) << r.out;
  const auto at = r.out.find("best plan:\n  loom train ");
  ASSERT_NE(at, std::string::npos) << r.out;
  const std::string command = r.out.substr(at);
  // The user's own flags (run length included) and the plan's; not the planner's inputs.
  EXPECT_NE(command.find("--epochs 3"), std::string::npos) << command;
  EXPECT_NE(command.find("--strategy "), std::string::npos) << command;
  EXPECT_NE(command.find("--predicted-samples-per-s "), std::string::npos) << command;
  EXPECT_EQ(command.find("--cluster"), std::string::npos) << command;
  EXPECT_EQ(command.find("--profile-repeats"), std::string::npos) << command;
}

TEST(Plan, StrategyAutoRunsThePlanItChoseAndSaysWhy) {
  const auto dir = loom::test::fresh_dir("plan", "auto");
  const auto metrics = dir + "/m.jsonl";
  loom::test::RunOptions o;
  // A node of 8 cores with fast links: two data-parallel workers win, so the job is
  // started anew from the rewritten command line.
  const auto fast = dir + "/fast.toml";
  std::ofstream(fast) << "[cluster]\nnodes = 1\nprocesses_per_node = 4\ncores_per_node = 8\nmemory_per_node_gib = 8\n"
                         "[links.intra]\nlatency_us = 1\nbandwidth_gbs = 20\n";
  o.argv = with(
      {LOOM_BINARY, "train", "--strategy", "auto", "--nproc", "2", "--cluster", fast},
      {"--model", "deep-mlp", "--width", "256", "--depth", "4", "--data", "synthetic", "--synthetic-samples", "512",
       "--batch-size", "64", "--threads", "1", "--steps", "4", "--no-eval", "--metrics", metrics, "--progress", "off",
       // An on/off flag of another strategy before a valued one: when auto drops
       // it, the flag after it stays whole.
       "--insecure", "--lr", "0.05", "--log-every", "2"});
  o.unset_env = loom::test::job_env_names();
  o.timeout = std::chrono::seconds(180);
  const auto r = loom::test::run(o);
  ASSERT_TRUE(r.exited_with(0)) << r.describe();
  const auto at = r.err.find("--strategy auto chose ");
  ASSERT_NE(at, std::string::npos) << r.describe();
  const std::string line = r.err.substr(at, r.err.find('\n', at) - at);
  EXPECT_NE(line.find("predicted"), std::string::npos) << line;
  std::ifstream in(metrics);
  std::string l, last;
  while (std::getline(in, l)) last = l;
  const auto summary = nlohmann::json::parse(last);
  const std::string strategy = summary["strategy"];
  EXPECT_EQ(line.rfind("--strategy auto chose " + strategy + " ", 0), 0u) << line << " ran " << strategy;
  EXPECT_EQ(strategy, "allreduce") << line;
  EXPECT_NE(r.err.find("does not use --insecure: it is dropped"), std::string::npos) << r.describe();
  {
    std::ifstream again(metrics);
    bool seen_step = false;
    while (std::getline(again, l)) {
      const auto rec = nlohmann::json::parse(l);
      if (rec["event"] != "step") continue;
      seen_step = true;
      EXPECT_DOUBLE_EQ(rec["lr"].get<double>(), 0.05) << l;
    }
    EXPECT_TRUE(seen_step);
  }
  EXPECT_GT(summary["predicted_samples_per_s"].get<double>(), 0);
  // One process available: single, and the user's allreduce flag is dropped with a word.
  o.argv = with(
      {LOOM_BINARY, "train", "--strategy", "auto", "--nproc", "1", "--bucket-mb", "8", "--cluster", cluster_file(dir)},
      {"--model", "deep-mlp", "--width", "32", "--depth", "4", "--data", "synthetic", "--synthetic-samples", "512",
       "--batch-size", "32", "--steps", "2", "--no-eval", "--progress", "off"});
  const auto one = loom::test::run(o);
  ASSERT_TRUE(one.exited_with(0)) << one.describe();
  EXPECT_NE(one.err.find("--strategy auto chose single "), std::string::npos) << one.describe();
  EXPECT_NE(one.err.find("does not use --bucket-mb: it is dropped"), std::string::npos) << one.describe();
}

TEST(Plan, StrategyAutoShardsInProportionWhenTheWorkersSpeedsDiffer) {
  const auto dir = loom::test::fresh_dir("plan", "auto-weights");
  const auto metrics = dir + "/m.jsonl";
  // Worker 1 computes at half worker 0's speed (as `loom plan --calibrate
  // --bench-slowdown 1:2` measures it); the run slows it the same way.
  const auto uneven = dir + "/uneven.toml";
  std::ofstream(uneven) << "[cluster]\nnodes = 1\nprocesses_per_node = 2\ncores_per_node = 8\n"
                           "memory_per_node_gib = 8\nprocess_speeds = [1.0, 0.5]\n"
                           "[links.intra]\nlatency_us = 1\nbandwidth_gbs = 20\n";
  loom::test::RunOptions o;
  o.argv =
      with({LOOM_BINARY, "train", "--strategy", "auto", "--nproc", "2", "--cluster", uneven, "--bench-slowdown", "1:2"},
           {"--model",
            "deep-mlp",
            "--width",
            "512",
            "--depth",
            "4",
            "--data",
            "synthetic",
            "--synthetic-samples",
            "1024",
            "--batch-size",
            "64",
            "--threads",
            "1",
            "--steps",
            "8",
            "--no-eval",
            "--metrics",
            metrics,
            "--progress",
            "off",
            "--log-level",
            "debug"});
  o.unset_env = loom::test::job_env_names();
  o.timeout = std::chrono::seconds(180);
  const auto r = loom::test::run(o);
  ASSERT_TRUE(r.exited_with(0)) << r.describe();
  EXPECT_NE(r.err.find("--strategy auto chose allreduce N=2 shard-weights=auto"), std::string::npos) << r.describe();
  // The trainer re-weighted from the workers' measured rates.
  EXPECT_NE(r.err.find("--shard-weights auto: throughput"), std::string::npos) << r.describe();
  std::ifstream in(metrics);
  std::string l, last;
  while (std::getline(in, l)) last = l;
  EXPECT_EQ(nlohmann::json::parse(last)["strategy"], "allreduce") << last;
}

TEST(Plan, VerifyRunsTheBestPlanAndShowsTheError) {
  const auto dir = loom::test::fresh_dir("plan", "verify");
  const auto r = plan(with(kJob, {"--nproc", "2", "--cluster", cluster_file(dir), "--top", "3", "--verify", "1",
                                  "--verify-steps", "12", "--strategies", "single,allreduce"}));
  ASSERT_TRUE(r.exited_with(0)) << r.describe();
  const auto at = r.out.find("verify: the best 1 plan");
  ASSERT_NE(at, std::string::npos) << r.out;
  EXPECT_NE(r.out.find("median |error|", at), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("failed", at), std::string::npos) << r.out;
}

}  // namespace
