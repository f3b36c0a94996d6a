// Layer costs for --balance: what each layer of a Sequential weighs.
//
//   parameter_costs  each layer's number of parameter elements (deterministic)
//   time_costs       each layer's measured forward + backward seconds on `sample`
//                    (one micro-batch), the median of `repeats` timed runs after one
//                    warm-up run. The model is left exactly as it was: gradients are
//                    restored and buffers (e.g. batch-norm statistics) copied back.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/modules/container/sequential.h>

#include <vector>

namespace loom::pipeline {

std::vector<double> parameter_costs(const torch::nn::Sequential& model);
std::vector<double> time_costs(torch::nn::Sequential& model, const at::Tensor& sample, int repeats = 5);

}  // namespace loom::pipeline
