#include "loom/train/trainer.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "loom/core/error.h"
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
