// The one place a strategy is made from its options (options.h).
#pragma once

#include <memory>

#include "loom/strategies/options.h"
#include "loom/strategies/strategy.h"

namespace loom::strategies {

std::unique_ptr<Strategy> make_strategy(const StrategyOptions& options);

}  // namespace loom::strategies
