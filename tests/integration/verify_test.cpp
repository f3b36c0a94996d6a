// Issue 18, "checking itself": a run records the planner's prediction beside what it
// measured (--predicted-samples-per-s), and plan::measure (behind `loom plan --verify`)
// runs real `loom train` jobs: a 2-process allreduce run measured, a bad flag and a
// timeout reported as one line, nothing left running.
#include "loom/plan/verify.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "loom/core/error.h"
#include "support/process.h"
#include "support/train_runs.h"

namespace {

loom::test::RunResult train(std::vector<std::string> args) {
  loom::test::RunOptions o;
  o.argv = {LOOM_BINARY, "train",     "--model",    "mlp", "--data",       "synthetic", "--synthetic-samples",
            "1024",      "--no-eval", "--progress", "off", "--batch-size", "64"};
  o.argv.insert(o.argv.end(), args.begin(), args.end());
  o.unset_env = loom::test::job_env_names();
  o.timeout = std::chrono::seconds(120);
  return loom::test::run(o);
}

TEST(PredictedRate, RecordedInTheSummaryBesideTheMeasuredOne) {
  const auto dir = loom::test::fresh_dir("verify", "predicted");
  const auto r = train({"--steps", "3", "--predicted-samples-per-s", "1000", "--metrics", dir + "/m.jsonl"});
  ASSERT_TRUE(r.exited_with(0)) << r.describe();
  const auto s = loom::test::summary_of(dir + "/m.jsonl");
  EXPECT_EQ(s["event"], "summary");
  EXPECT_DOUBLE_EQ(s.at("predicted_samples_per_s").get<double>(), 1000.0);
  const double measured = s.at("samples_per_s").get<double>();
  EXPECT_GT(measured, 0);
  EXPECT_NEAR(s.at("prediction_error").get<double>(), measured / 1000 - 1, 1e-9);
  EXPECT_NE(r.err.find("planner predicted 1000 samples/s, measured "), std::string::npos) << r.err;

  // Without a prediction: neither key, no line.
  const auto plain = train({"--steps", "3", "--metrics", dir + "/plain.jsonl"});
  ASSERT_TRUE(plain.exited_with(0)) << plain.describe();
  const auto p = loom::test::summary_of(dir + "/plain.jsonl");
  EXPECT_FALSE(p.contains("predicted_samples_per_s"));
  EXPECT_FALSE(p.contains("prediction_error"));
  EXPECT_EQ(plain.err.find("planner predicted"), std::string::npos) << plain.err;

  const auto bad = train({"--steps", "3", "--predicted-samples-per-s", "-5"});
  EXPECT_TRUE(bad.exited_with(1)) << bad.describe();
  EXPECT_NE(bad.err.find("--predicted-samples-per-s must be a number >= 0"), std::string::npos) << bad.describe();
  EXPECT_EQ(bad.err_lines().size(), 1u) << bad.describe();
}

const std::vector<std::string> kJob = {"--model", "mlp",       "--width",      "32", "--depth",    "2",
                                       "--data",  "synthetic", "--batch-size", "64", "--strategy", "allreduce",
                                       "--nproc", "2",         "--threads",    "1"};

loom::plan::MeasureOptions options(const std::string& work_dir) {
  loom::plan::MeasureOptions o;
  o.loom = LOOM_BINARY;
  o.steps = 20;
  o.warmup_steps = 5;
  o.log_every = 5;
  o.timeout_s = 120;
  o.work_dir = work_dir;
  return o;
}

// Processes whose command line mentions `text` (the work directory is in every one the
// run started: its metrics path is in each worker's arguments).
std::vector<std::string> processes_mentioning(const std::string& text) {
  std::vector<std::string> found;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    std::ifstream in(entry.path() / "cmdline", std::ios::binary);
    std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (cmdline.find(text) != std::string::npos) found.push_back(entry.path().filename().string());
  }
  return found;
}

TEST(Measure, ATwoProcessAllreduceRun) {
  const auto dir = loom::test::fresh_dir("verify", "measure");
  const auto r = loom::plan::measure(kJob, options(dir));
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_TRUE(r.error.empty()) << r.error;
  EXPECT_GT(r.samples_per_s, 0);
  EXPECT_GT(r.summary_samples_per_s, 0);
  EXPECT_GT(r.wall_s, 0);
  // Its metrics: the flags measure added, 4 step records and the summary, 2 workers.
  std::ifstream in(dir + "/m.jsonl");
  std::vector<nlohmann::json> records;
  for (std::string line; std::getline(in, line);) records.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(records.size(), 5u);
  EXPECT_EQ(records[0]["step"], 5);
  EXPECT_EQ(records.back()["steps"], 20);
  EXPECT_EQ(records.back()["world_size"], 2);
  EXPECT_EQ(records.back()["strategy"], "allreduce");
  EXPECT_EQ(records.back()["evaluated"], false);
  EXPECT_DOUBLE_EQ(r.summary_samples_per_s, records.back()["samples_per_s"].get<double>());
  EXPECT_TRUE(processes_mentioning(dir).empty());
}

TEST(Measure, AnEnclosingJobsVariablesDoNotReachTheRun) {
  // Under `loom run` / torchrun these are set; the measured run must start its own 2 workers.
  const auto dir = loom::test::fresh_dir("verify", "env");
  ::setenv("RANK", "1", 1);
  ::setenv("WORLD_SIZE", "4", 1);
  ::setenv("MASTER_PORT", "1", 1);
  ::setenv("LOOM_FAULT_INJECT", "kill:0:1", 1);
  const auto r = loom::plan::measure(kJob, options(dir));
  for (const char* name : {"RANK", "WORLD_SIZE", "MASTER_PORT", "LOOM_FAULT_INJECT"}) ::unsetenv(name);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(loom::test::summary_of(dir + "/m.jsonl")["world_size"], 2);
}

TEST(Measure, ABadFlagIsOneLineNamingIt) {
  const auto dir = loom::test::fresh_dir("verify", "bad");
  auto job = kJob;
  job.insert(job.end(), {"--no-such-flag", "3"});
  const auto r = loom::plan::measure(job, options(dir));
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("no-such-flag"), std::string::npos) << r.error;
  EXPECT_EQ(r.error.find('\n'), std::string::npos) << r.error;
  EXPECT_EQ(r.samples_per_s, 0);

  // Workers that fail: the cause (not only the launcher's "rank 0 exited with code 1").
  auto missing = kJob;
  missing.insert(missing.end(), {"--data", "npy:" + dir + "/x.npy," + dir + "/missing.npy"});
  const auto m = loom::plan::measure(missing, options(dir));
  EXPECT_FALSE(m.ok);
  EXPECT_NE(m.error.find("data error: cannot open " + dir + "/"), std::string::npos) << m.error;
  EXPECT_NE(m.error.find("exited with code 1"), std::string::npos) << m.error;
  EXPECT_EQ(m.error.find('\n'), std::string::npos) << m.error;
}

TEST(Measure, ARunOutOfTimeIsStoppedWithNothingLeftBehind) {
  const auto dir = loom::test::fresh_dir("verify", "timeout");
  auto o = options(dir);
  o.steps = 100'000'000;
  o.timeout_s = 4;
  const auto r = loom::plan::measure(kJob, o);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("did not finish within 4 s"), std::string::npos) << r.error;
  EXPECT_EQ(r.error.find('\n'), std::string::npos) << r.error;
  EXPECT_GE(r.wall_s, 4);
  EXPECT_LT(r.wall_s, 4 + 12);
  EXPECT_TRUE(processes_mentioning(dir).empty());
}

TEST(Measure, CtrlCStopsTheRunAndEndsMeasure) {
  const auto dir = loom::test::fresh_dir("verify", "interrupt");
  auto o = options(dir);
  o.steps = 100'000'000;
  o.timeout_s = 60;
  auto running = std::async(std::launch::async, [&] { return loom::plan::measure(kJob, o); });
  // Once the workers train (the metrics file has a record), interrupt this process.
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!std::filesystem::exists(dir + "/m.jsonl.partial") && std::chrono::steady_clock::now() < give_up &&
         running.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (running.wait_for(std::chrono::seconds(0)) == std::future_status::ready) {
    FAIL() << "the run ended by itself: " << running.get().error;
  }
  ASSERT_TRUE(std::filesystem::exists(dir + "/m.jsonl.partial"));
  ::kill(::getpid(), SIGINT);
  try {
    running.get();
    ADD_FAILURE() << "measure returned after SIGINT";
  } catch (const loom::LaunchError& e) {
    EXPECT_NE(std::string(e.what()).find("stopped by SIGINT"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(processes_mentioning(dir).empty());
}

}  // namespace
