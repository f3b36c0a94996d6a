// The loss every built-in model trains with, in one place so that every strategy and
// the pipeline stages compute the same number (the equivalence contract of DESIGN.md).
#pragma once

#include <ATen/core/Tensor.h>

namespace loom::models {

// Mean cross-entropy over the batch: `logits` [N, C], `targets` [N] class indices.
at::Tensor training_loss(const at::Tensor& logits, const at::Tensor& targets);

}  // namespace loom::models
