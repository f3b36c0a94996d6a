// Evaluation of a whole model on a data set (no gradients, eval mode, restored after).
#pragma once

#include <torch/nn/modules/container/sequential.h>

#include "loom/data/dataset.h"
#include "loom/models/registry.h"

namespace loom::train {

// What fits the loss: every loss has `loss` (the training loss's mean over the set);
// classification (cross-entropy: argmax of the logits; bce-with-logits: each output
// value's logit > 0 against target >= 0.5) has `accuracy` (the fraction right, over
// rows or over values), regression (mse) has `mse` (the mean squared error over every
// value). The other is -1.
struct EvalResult {
  double loss = 0;
  double accuracy = -1;
  double mse = -1;
  int64_t samples = 0;
};

EvalResult evaluate(torch::nn::Sequential& model, const data::Dataset& dataset, int64_t batch_size,
                    models::LossKind loss = models::LossKind::cross_entropy);

}  // namespace loom::train
