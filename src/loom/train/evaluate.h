// Evaluation of a whole model on a data set (no gradients, eval mode, restored after).
#pragma once

#include <torch/nn/modules/container/sequential.h>

#include "loom/data/dataset.h"

namespace loom::train {

struct EvalResult {
  double loss = 0;
  double accuracy = 0;
  int64_t samples = 0;
};

EvalResult evaluate(torch::nn::Sequential& model, const data::Dataset& dataset, int64_t batch_size);

}  // namespace loom::train
