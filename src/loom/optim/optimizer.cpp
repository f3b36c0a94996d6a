#include "loom/optim/optimizer.h"

#include <torch/torch.h>

#include "loom/core/error.h"

namespace loom::optim {

std::unique_ptr<torch::optim::Optimizer> make_optimizer(std::vector<at::Tensor> parameters, const OptimizerOptions& o) {
  if (o.name == "sgd") {
    return std::make_unique<torch::optim::SGD>(
        std::move(parameters), torch::optim::SGDOptions(o.lr).momentum(o.momentum).weight_decay(o.weight_decay));
  }
  if (o.name == "adam") {
    return std::make_unique<torch::optim::Adam>(
        std::move(parameters),
        torch::optim::AdamOptions(o.lr).betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(o.weight_decay));
  }
  LOOM_THROW(ConfigError, "--optimizer: unknown optimizer '{}' (expected sgd or adam)", o.name);
}

}  // namespace loom::optim
