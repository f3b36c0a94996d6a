// The one map from `loom train` flags to strategy options, and the rule that a flag the
// chosen strategy does not use is an error naming it.
#include "loom/train/strategy_options.h"

#include <gtest/gtest.h>

#include <string>

#include "loom/core/error.h"

namespace loom::train {
namespace {

std::string error_of(const TrainConfig& c) {
  try {
    validate(c);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(StrategyOptions, AFlagTheStrategyDoesNotUseIsAnErrorNamingTheFlagAndItsUsers) {
  TrainConfig c;
  c.strategy = "hybrid";
  c.sync = "params";
  EXPECT_NE(error_of(c).find("--sync does not apply to --strategy hybrid (it is used by --strategy allreduce)"),
            std::string::npos)
      << error_of(c);

  c = TrainConfig{};
  c.strategy = "pipeline";
  c.bench_slowdown = "1:3";
  EXPECT_NE(error_of(c).find("--bench-slowdown does not apply to --strategy pipeline"), std::string::npos);

  c = TrainConfig{};
  c.strategy = "allreduce";
  c.micro_batches = 8;
  EXPECT_NE(error_of(c).find("--micro-batches does not apply to --strategy allreduce (it is used by --strategy "
                             "pipeline, hybrid)"),
            std::string::npos);

  c = TrainConfig{};
  c.strategy = "single";
  c.servers = 2;
  EXPECT_NE(error_of(c).find("--servers does not apply to --strategy single"), std::string::npos);
}

TEST(StrategyOptions, FlagsTheStrategyUsesAreAccepted) {
  TrainConfig c;
  c.strategy = "hybrid";
  c.nproc = 4;
  c.dp = 2;
  c.pp = 2;
  c.micro_batches = 8;
  c.grad_compression = "fp16";
  EXPECT_EQ(error_of(c), "");
  c = TrainConfig{};
  c.strategy = "allreduce";
  c.sync = "params";
  c.sync_every = 4;
  c.bench_slowdown = "1:2";
  EXPECT_EQ(error_of(c), "");
}

TEST(StrategyOptions, AreFilledFromTheFlags) {
  TrainConfig c;
  c.strategy = "hybrid";
  c.dp = 2;
  c.pp = 3;
  c.batch_size = 64;
  c.micro_batches = 4;
  c.schedule = "gpipe";
  c.balance = "time";
  c.bucket_mb = 0.5;
  const auto o = strategy_options(c, 0, {});
  EXPECT_EQ(o.kind, strategies::StrategyKind::hybrid);
  EXPECT_EQ(o.hybrid.dp, 2);
  EXPECT_EQ(o.hybrid.pp, 3);
  EXPECT_EQ(o.hybrid.schedule, pipeline::ScheduleKind::gpipe);
  EXPECT_EQ(o.hybrid.split.balance, pipeline::Balance::time);
  EXPECT_EQ(o.hybrid.split.profile_rows, 8);  // one micro-batch of one replica: 64 / (2 x 4)
  EXPECT_DOUBLE_EQ(o.hybrid.ddp.bucket_cap_mb, 0.5);
  EXPECT_DOUBLE_EQ(o.hybrid.ddp.first_bucket_mb, 0.5);

  c = TrainConfig{};
  c.strategy = "pipeline";
  const auto p = strategy_options(c, 0, {});
  EXPECT_EQ(p.hybrid.dp, 1);
  EXPECT_EQ(p.hybrid.pp, 0);  // every rank a stage

  c = TrainConfig{};
  c.strategy = "allreduce";
  c.bench_slowdown = "1:3";
  EXPECT_DOUBLE_EQ(strategy_options(c, 0, {}).step.slowdown, 1.0);
  EXPECT_DOUBLE_EQ(strategy_options(c, 1, {}).step.slowdown, 3.0);
  c.skip_nonfinite = 2;
  EXPECT_TRUE(strategy_options(c, 0, {}).step.skip_nonfinite);
}

}  // namespace
}  // namespace loom::train
