// `loom train` flags -> the chosen strategy's options: the one place the CLI's
// TrainConfig meets the strategies layer (strategies/options.h).
#pragma once

#include <string>
#include <vector>

#include "loom/strategies/options.h"
#include "loom/train/train_config.h"

namespace loom::train {

// The options of c.strategy for the process of data rank `rank` (which --bench-slowdown
// may name); `van` is the parameter-server transport's token and CURVE key (JobEnvironment).
strategies::StrategyOptions strategy_options(const TrainConfig& c, int rank, const ps::VanOptions& van);

// ConfigError naming the first flag that is set (differs from its default) but that
// c.strategy does not use, and the strategies that do use it.
void check_flags_apply(const TrainConfig& c);
// The flags `c` sets that `strategy` does not use (what check_flags_apply would reject
// under it): the planner leaves them out of a plan's command line.
std::vector<std::string> flags_unused_by(const TrainConfig& c, const std::string& strategy);
// `c` as one process of --strategy single, every strategy-specific flag (those of
// check_flags_apply, the ZeRO and partition weights) at its default: the job the
// planner validates before it chooses the strategy.
TrainConfig as_single_process(const TrainConfig& c);

}  // namespace loom::train
