#include "loom/train/metrics.h"

#include <gtest/gtest.h>

#include <limits>
#include <nlohmann/json.hpp>

#include "loom/core/error.h"
#include "loom/train/train_config.h"

namespace {

using loom::train::MetricsWriter;
using loom::train::Summary;

Summary a_summary() {
  Summary s;
  s.strategy = "allreduce";
  s.world_size = 2;
  s.model = "mlp";
  s.steps = 40;
  s.samples = 2560;
  s.train_s = 2;
  s.samples_per_s = 1280;
  return s;
}

TEST(MetricsSummary, WithoutAPredictionTheKeysAreAbsent) {
  const auto j = nlohmann::json::parse(MetricsWriter::to_json(a_summary()));
  EXPECT_EQ(j["event"], "summary");
  EXPECT_EQ(j["samples_per_s"], 1280.0);
  EXPECT_FALSE(j.contains("predicted_samples_per_s"));
  EXPECT_FALSE(j.contains("prediction_error"));
  EXPECT_FALSE(j.contains("optimizer_state_bytes"));
}

TEST(MetricsSummary, APredictionAndTheRelativeErrorOfTheMeasuredRate) {
  Summary s = a_summary();
  s.predicted_samples_per_s = 1000;
  auto j = nlohmann::json::parse(MetricsWriter::to_json(s));
  EXPECT_DOUBLE_EQ(j.at("predicted_samples_per_s").get<double>(), 1000.0);
  EXPECT_NEAR(j.at("prediction_error").get<double>(), 0.28, 1e-12);  // measured 28% faster

  s.predicted_samples_per_s = 2560;  // measured half the prediction
  j = nlohmann::json::parse(MetricsWriter::to_json(s));
  EXPECT_NEAR(j.at("prediction_error").get<double>(), -0.5, 1e-12);
  EXPECT_NEAR(s.prediction_error(), -0.5, 1e-12);
}

TEST(MetricsSummary, APredictionMustBeAFiniteRateOrZero) {
  loom::train::TrainConfig c;
  c.predicted_samples_per_s = 0;
  EXPECT_NO_THROW(loom::train::validate(c));
  c.predicted_samples_per_s = 1500.5;
  EXPECT_NO_THROW(loom::train::validate(c));
  for (const double bad : {-1.0, std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity()}) {
    c.predicted_samples_per_s = bad;
    EXPECT_THROW(loom::train::validate(c), loom::ConfigError) << bad;
  }
}

}  // namespace
