#include "loom/models/registry.h"

#include <torch/nn/functional/loss.h>

namespace loom::models {

at::Tensor training_loss(const at::Tensor& logits, const at::Tensor& targets) {
  return torch::nn::functional::cross_entropy(logits, targets);
}

}  // namespace loom::models
