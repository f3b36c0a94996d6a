#include "loom/strategies/options.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "loom/core/error.h"

namespace loom::strategies {

const std::vector<std::string>& strategy_names() {
  static const std::vector<std::string> names{"single", "allreduce", "ps", "pipeline", "hybrid"};
  return names;
}

StrategyKind parse_strategy(const std::string& name) {
  const auto& names = strategy_names();
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] == name) return static_cast<StrategyKind>(i);
  }
  LOOM_THROW(ConfigError, "--strategy: unknown value '{}' (expected one of: {})", name, fmt::join(names, ", "));
}

std::string strategy_name(StrategyKind kind) { return strategy_names().at(static_cast<size_t>(kind)); }

const std::vector<std::string>& sync_mode_names() {
  static const std::vector<std::string> names{"grads", "params"};
  return names;
}

SyncMode parse_sync_mode(const std::string& name) {
  if (name == "grads") return SyncMode::grads;
  if (name == "params") return SyncMode::params;
  LOOM_THROW(ConfigError, "--sync: unknown value '{}' (expected one of: {})", name, fmt::join(sync_mode_names(), ", "));
}

}  // namespace loom::strategies
