#include "loom/train/trainer.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "loom/core/error.h"
#include "loom/strategies/strategy.h"
#include "loom/train/model_io.h"
#include "support/temp_path.h"

namespace {

using namespace loom::train;

TrainConfig synthetic_config() {
  TrainConfig c;
  c.model = "mlp";
  c.data = "synthetic";
  c.synthetic_samples = 2048;
  c.batch_size = 64;
  c.lr = 0.05;
  c.momentum = 0.9;
  c.epochs = 2;
  c.progress = "off";
  c.log_every = 8;
  return c;
}

std::string temp(const std::string& name) { return loom::test::temp_path(name); }

TEST(Trainer, LearnsSyntheticData) {
  auto c = synthetic_config();
  c.metrics = temp("trainer_metrics.jsonl");
  const Summary s = Trainer(c, nullptr).run();
  EXPECT_EQ(s.steps, 2 * (2048 / 64));
  EXPECT_EQ(s.samples, s.steps * 64);
  EXPECT_LT(s.final_train_loss, 0.4);
  EXPECT_GT(s.test_accuracy, 0.85);
  EXPECT_GT(s.samples_per_s, 0);

  // The metrics file: step records, an eval record per epoch, the summary last.
  std::ifstream in(c.metrics);
  std::vector<nlohmann::json> records;
  for (std::string line; std::getline(in, line);) records.push_back(nlohmann::json::parse(line));
  ASSERT_GE(records.size(), 3u);
  EXPECT_EQ(records.front()["event"], "step");
  for (const char* key : {"step", "epoch", "loss", "samples_per_s"}) EXPECT_TRUE(records.front().contains(key)) << key;
  const auto& summary = records.back();
  EXPECT_EQ(summary["event"], "summary");
  for (const char* key : {"strategy", "world_size", "model", "steps", "samples", "wall_s", "samples_per_s",
                          "final_train_loss", "test_accuracy"}) {
    EXPECT_TRUE(summary.contains(key)) << key;
  }
  EXPECT_EQ(summary["strategy"], "single");
  EXPECT_EQ(summary["steps"], s.steps);
  EXPECT_FALSE(std::filesystem::exists(c.metrics + ".partial"));
}

TEST(Trainer, SameSeedSameParametersDifferentSeedDifferent) {
  auto c = synthetic_config();
  c.epochs = 1;
  c.steps = 10;
  c.eval = false;
  c.save = temp("a.pt");
  Trainer(c, nullptr).run();
  c.save = temp("b.pt");
  Trainer(c, nullptr).run();
  c.seed = 1;
  c.save = temp("c.pt");
  Trainer(c, nullptr).run();
  const auto a = load_model_file(temp("a.pt")), b = load_model_file(temp("b.pt")), d = load_model_file(temp("c.pt"));
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(a[i].second.equal(b[i].second)) << a[i].first;
  EXPECT_FALSE(a[0].second.equal(d[0].second));
}

TEST(Trainer, StepsCrossEpochs) {
  auto c = synthetic_config();
  c.steps = 40;  // 32 steps per epoch
  c.eval = false;
  const Summary s = Trainer(c, nullptr).run();
  EXPECT_EQ(s.steps, 40);
  EXPECT_EQ(s.epochs, 2);
}

TEST(Trainer, InitContinuesFromAModelFile) {
  auto c = synthetic_config();
  c.steps = 5;
  c.eval = false;
  c.save = temp("init_a.pt");
  Trainer(c, nullptr).run();
  // Starting from a trained file with a tiny lr keeps the parameters close to it.
  c.init = temp("init_a.pt");
  c.lr = 1e-6;
  c.momentum = 0;
  c.steps = 1;
  c.save = temp("init_b.pt");
  Trainer(c, nullptr).run();
  const auto a = load_model_file(temp("init_a.pt")), b = load_model_file(temp("init_b.pt"));
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::allclose(a[i].second, b[i].second, 0, 1e-4));
}

TEST(Trainer, BadInputFailsBeforeWritingAnything) {
  auto c = synthetic_config();
  c.metrics = temp("bad_metrics.jsonl");
  c.save = temp("bad_model.pt");
  c.batch_size = 100000;
  try {
    Trainer(c, nullptr).run();
    FAIL();
  } catch (const loom::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("--batch-size 100000 is larger than the training set (2048 samples)"),
              std::string::npos)
        << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(c.metrics));
  EXPECT_FALSE(std::filesystem::exists(c.metrics + ".partial"));
  EXPECT_FALSE(std::filesystem::exists(c.save));
  c.batch_size = 0;
  EXPECT_THROW(Trainer(c, nullptr), loom::ConfigError);
  c.batch_size = 64;
  c.strategy = "bogus";
  EXPECT_THROW(Trainer(c, nullptr), loom::ConfigError);
}

TEST(Trainer, DivergenceStopsWithANamedError) {
  auto c = synthetic_config();
  c.lr = 1e6;
  c.momentum = 0.99;
  c.eval = false;
  try {
    Trainer(c, nullptr).run();
    FAIL() << "no error";
  } catch (const loom::TrainingError& e) {
    EXPECT_NE(std::string(e.what()).find("the training loss became"), std::string::npos) << e.what();
  }
}

}  // namespace

// The Trainer's loop driven through a fake strategy: what it calls, in which order, with
// which batches and shares, and how it turns the strategy's losses into the summary.
class FakeStrategy : public loom::strategies::Strategy {
 public:
  struct Log {
    std::vector<std::string> calls;
    std::vector<loom::strategies::StepInfo> steps;
    std::vector<int64_t> batch_sizes;
  };
  FakeStrategy(Log& log, int data_ranks, std::vector<int64_t> skip = {})
      : log_(log), data_ranks_(data_ranks), skip_(std::move(skip)) {}
  std::string name() const override { return "fake"; }
  void setup(const loom::strategies::StrategySetup& s) override {
    log_.calls.push_back("setup");
    model_ = s.model;
  }
  loom::strategies::DataSlot data_slot() const override { return {0, data_ranks_, true}; }
  loom::strategies::StepOutput step(const loom::data::Batch& batch, const loom::strategies::StepInfo& info) override {
    log_.calls.push_back("step");
    log_.steps.push_back(info);
    log_.batch_sizes.push_back(batch.size());
    const bool skipped = std::find(skip_.begin(), skip_.end(), info.step) != skip_.end();
    return {static_cast<double>(info.step), batch.size(), 0.001, skipped};  // loss = the step's index
  }
  // The other data ranks are this one's twins: the sum is data_ranks x this value.
  double sum_over_data_ranks(double value) override { return data_ranks_ * value; }
  torch::nn::Sequential final_model() override {
    log_.calls.push_back("final_model");
    return model_;
  }
  void finish() override { log_.calls.push_back("finish"); }

 private:
  Log& log_;
  int data_ranks_;
  std::vector<int64_t> skip_;
  torch::nn::Sequential model_{nullptr};
};

TEST(Trainer, DrivesAStrategyStepByStepAndReportsTheWeightedWindowLoss) {
  auto c = synthetic_config();
  c.steps = 10;
  c.log_every = 4;
  c.eval = false;
  FakeStrategy::Log log;
  const Summary s = Trainer(c, nullptr, std::make_unique<FakeStrategy>(log, 2)).run();
  // setup once, 10 steps, the final model, finish last.
  ASSERT_EQ(log.calls.size(), 13u);
  EXPECT_EQ(log.calls.front(), "setup");
  EXPECT_EQ(log.calls[11], "final_model");
  EXPECT_EQ(log.calls.back(), "finish");
  for (int64_t t = 0; t < 10; ++t) {
    EXPECT_EQ(log.steps[t].step, t);
    EXPECT_EQ(log.steps[t].global_batch, 64);
    EXPECT_DOUBLE_EQ(log.steps[t].share, 0.5);  // data rank 0 of 2, strided halves
    EXPECT_EQ(log.batch_sizes[t], 32);
  }
  // The last window is steps 9 and 10 (losses 8 and 9): each rank's mean weighted by
  // its share (0.5), summed over the 2 ranks, averaged over the window's steps.
  EXPECT_EQ(s.steps, 10);
  EXPECT_DOUBLE_EQ(s.final_train_loss, 8.5);
  EXPECT_EQ(s.samples, 10 * 64);
  EXPECT_EQ(s.skipped_steps, 0);
}

TEST(Trainer, CountsSkippedStepsAndStopsAfterTooManyInARow) {
  auto c = synthetic_config();
  c.steps = 10;
  c.log_every = 4;
  c.eval = false;
  c.skip_nonfinite = 1;
  FakeStrategy::Log log;
  const Summary s = Trainer(c, nullptr, std::make_unique<FakeStrategy>(log, 1, std::vector<int64_t>{8})).run();
  EXPECT_EQ(s.skipped_steps, 1);
  EXPECT_DOUBLE_EQ(s.final_train_loss, 9.0);  // step 9 (index 8) skipped: only index 9 counts

  FakeStrategy::Log log2;
  Trainer twice(c, nullptr, std::make_unique<FakeStrategy>(log2, 1, std::vector<int64_t>{3, 4}));
  try {
    twice.run();
    FAIL() << "two skipped steps in a row passed --skip-nonfinite 1";
  } catch (const loom::TrainingError& e) {
    EXPECT_NE(std::string(e.what()).find("not finite for 2 steps in a row (steps 4 to 5"), std::string::npos)
        << e.what();
  }
}
