#include "loom/strategies/nonfinite.h"

#include <torch/torch.h>

#include <vector>

#include "loom/comm/group.h"
#include "loom/dp/zero_optimizer.h"

namespace loom::strategies {

bool gradients_finite(const torch::optim::Optimizer& optimizer) {
  // ZeRO stage 2: param.grad is freed; the rank's range of the gradients is all it has.
  const auto* zero = dynamic_cast<const dp::ZeroRedundancyOptimizer*>(&optimizer);
  if (zero && zero->gradients_sharded()) return at::isfinite(zero->gradient_shard()).all().item<bool>();
  for (const auto& group : optimizer.param_groups()) {
    for (const auto& p : group.params()) {
      const at::Tensor& g = p.grad();
      if (g.defined() && !at::isfinite(g).all().item<bool>()) return false;
    }
  }
  return true;
}

bool step_unless_nonfinite(torch::optim::Optimizer& optimizer, bool skip_nonfinite, comm::Group* agree) {
  bool skip = false;
  if (skip_nonfinite) {
    skip = !gradients_finite(optimizer);
    if (agree && agree->size() > 1) {
      std::vector<at::Tensor> flag{torch::full({1}, skip ? 1.0f : 0.0f)};
      agree->allreduce(flag, comm::ReduceOp::max).wait();
      skip = flag[0].item<float>() > 0;
    }
  }
  if (!skip) optimizer.step();
  return skip;
}

}  // namespace loom::strategies
