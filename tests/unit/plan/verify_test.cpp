// plan::measure's parts that need no process: the steady-state rate of a metrics file,
// and what it rejects before starting anything. The runs themselves:
// tests/integration/verify_test.cpp.
#include "loom/plan/verify.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "loom/core/error.h"

namespace {

using loom::plan::MeasureOptions;
using loom::plan::steady_samples_per_s;

std::string step(int64_t s, double rate, double ms) {
  return "{\"event\":\"step\",\"step\":" + std::to_string(s) +
         ",\"epoch\":0,\"loss\":1.0,\"samples_per_s\":" + std::to_string(rate) +
         ",\"lr\":0.01,\"step_ms\":" + std::to_string(ms) + "}\n";
}

// Steps 1-5 slow (warm-up), then two windows of 5 steps: 5 x 10 ms at 6400/s and
// 5 x 30 ms at 2000/s. Over those 200 ms: 320 + 300 samples.
const std::string kMetrics =
    step(5, 100, 500) + step(10, 6400, 10) + step(15, 2000, 30) + "{\"event\":\"summary\",\"samples_per_s\":900}\n";

TEST(SteadySamplesPerS, TheStepRecordsAfterTheWarmUpWeightedByTheirTime) {
  EXPECT_NEAR(steady_samples_per_s(kMetrics, 5), 620 / 0.2, 1e-6);
  // Without a warm-up every record counts: + 5 x 500 ms at 100/s.
  EXPECT_NEAR(steady_samples_per_s(kMetrics, 0), (250 + 620) / 2.7, 1e-6);
  // A warm-up between two records ends at the next one.
  EXPECT_NEAR(steady_samples_per_s(kMetrics, 7), 300 / 0.15, 1e-6);
  // Records in any order.
  EXPECT_NEAR(steady_samples_per_s(step(15, 2000, 30) + step(10, 6400, 10) + step(5, 100, 500), 5), 620 / 0.2, 1e-6);
}

TEST(SteadySamplesPerS, NoTimedRecordAfterTheWarmUpIsAnError) {
  EXPECT_THROW(steady_samples_per_s(kMetrics, 15), loom::Error);
  EXPECT_THROW(steady_samples_per_s(kMetrics, 16), loom::Error);
  EXPECT_THROW(steady_samples_per_s("", 0), loom::Error);
  EXPECT_THROW(steady_samples_per_s("{\"event\":\"step\",\"step\":5}\n", 0), loom::Error);
  EXPECT_THROW(steady_samples_per_s("not json\n", 0), loom::Error);
}

MeasureOptions options() {
  MeasureOptions o;
  o.loom = "/nonexistent/loom";  // never started: everything here is rejected first
  return o;
}

TEST(Measure, TrainArgumentsThatSetTheRunsLengthOrOutputsAreRejectedByName) {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{{"--steps", "5"},
                                                                                    {"--model", "mlp", "--steps=5"},
                                                                                    {"--metrics", "m.jsonl"},
                                                                                    {"--no-eval"},
                                                                                    {"--eval"},
                                                                                    {"--progress", "bar"},
                                                                                    {"--log-every", "1"},
                                                                                    {"--time-limit", "3"},
                                                                                    {"--save", "x.pt"},
                                                                                    {"--checkpoint-dir", "d"}}) {
    try {
      loom::plan::measure(args, options());
      ADD_FAILURE() << "accepted " << args.back();
    } catch (const loom::ConfigError& e) {
      const std::string flag = args.back().rfind("--", 0) == 0 ? args.back() : args[args.size() - 2];
      std::string name = flag.substr(0, flag.find('='));
      if (name == "--no-eval") name = "--eval";
      EXPECT_NE(std::string(e.what()).find("must not set " + name + " "), std::string::npos) << e.what();
    }
  }
}

TEST(Measure, BadOptionsAreConfigErrors) {
  auto o = options();
  o.warmup_steps = o.steps;
  EXPECT_THROW(loom::plan::measure({}, o), loom::ConfigError);
  o = options();
  o.log_every = 0;
  EXPECT_THROW(loom::plan::measure({}, o), loom::ConfigError);
  o = options();
  o.timeout_s = 0;
  EXPECT_THROW(loom::plan::measure({}, o), loom::ConfigError);
  o = options();
  o.loom.clear();
  EXPECT_THROW(loom::plan::measure({}, o), loom::ConfigError);
  // Good options: the missing program is the first thing wrong.
  EXPECT_THROW(loom::plan::measure({}, options()), loom::LaunchError);
}

}  // namespace
