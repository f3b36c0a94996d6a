#include "loom/train/strategy.h"

#include <torch/torch.h>

#include "loom/core/error.h"
#include "loom/dp/allreduce_strategy.h"
#include "loom/ps/ps_strategy.h"
#include "loom/train/single_strategy.h"

namespace loom::train {

std::unique_ptr<Strategy> make_strategy(const std::string& name) {
  if (name == "single") return std::make_unique<SingleStrategy>();
  if (name == "allreduce") return std::make_unique<dp::AllreduceStrategy>();
  if (name == "ps") return std::make_unique<ps::PsStrategy>();
  if (name == "pipeline" || name == "hybrid") {
    LOOM_THROW(ConfigError, "--strategy {}: not available in this build yet (available: single, allreduce, ps)", name);
  }
  LOOM_THROW(ConfigError, "--strategy: unknown strategy '{}' (expected single, allreduce, ps, pipeline or hybrid)",
             name);
}

at::Tensor training_loss(const at::Tensor& logits, const at::Tensor& targets) {
  return torch::nn::functional::cross_entropy(logits, targets);
}

}  // namespace loom::train
