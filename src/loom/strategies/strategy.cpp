#include "loom/strategies/strategy.h"

#include "loom/core/error.h"

namespace loom::strategies {

LocalState Strategy::local_state() {
  LOOM_THROW(ConfigError, "--checkpoint-dir: --strategy {} cannot write training checkpoints yet", name());
}

}  // namespace loom::strategies
