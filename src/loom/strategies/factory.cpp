#include "loom/strategies/factory.h"

#include "loom/strategies/allreduce.h"
#include "loom/strategies/hybrid.h"
#include "loom/strategies/ps.h"
#include "loom/strategies/single.h"

namespace loom::strategies {

std::unique_ptr<Strategy> make_strategy(const StrategyOptions& o) {
  switch (o.kind) {
    case StrategyKind::single: return std::make_unique<SingleStrategy>(o.step);
    case StrategyKind::allreduce: return std::make_unique<AllreduceStrategy>(o.allreduce, o.step);
    case StrategyKind::ps: return std::make_unique<PsStrategy>(o.ps, o.step);
    case StrategyKind::pipeline: {
      HybridOptions h = o.hybrid;
      h.dp = 1;
      h.pp = 0;  // every rank of the job is a stage
      return std::make_unique<HybridStrategy>(h, o.step);
    }
    case StrategyKind::hybrid: return std::make_unique<HybridStrategy>(o.hybrid, o.step);
  }
  return nullptr;
}

}  // namespace loom::strategies
