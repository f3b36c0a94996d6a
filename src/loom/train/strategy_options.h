// `loom train` flags -> the chosen strategy's options: the one place the CLI's
// TrainConfig meets the strategies layer (strategies/options.h).
#pragma once

#include "loom/strategies/options.h"
#include "loom/train/train_config.h"

namespace loom::train {

// The options of c.strategy for the process of data rank `rank` (which --bench-slowdown
// may name); `van` is the parameter-server transport's token and CURVE key (JobEnvironment).
strategies::StrategyOptions strategy_options(const TrainConfig& c, int rank, const ps::VanOptions& van);

// ConfigError naming the first flag that is set (differs from its default) but that
// c.strategy does not use, and the strategies that do use it.
void check_flags_apply(const TrainConfig& c);

}  // namespace loom::train
