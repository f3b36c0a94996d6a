// Layer costs for --balance: what each layer of a Sequential weighs.
//
//   parameter_costs  each layer's number of parameter elements (deterministic)
//   time_costs       each layer's measured forward + backward seconds on `sample`
//                    (one micro-batch), the median of `repeats` timed runs after one
//                    warm-up run. The model is left exactly as it was: gradients are
//                    restored and buffers (e.g. batch-norm statistics) copied back.
//   profile_layers   the same runs, reported per layer in parts (forward and backward
//                    medians apart, the bytes of its output and of its parameters): what
//                    a cost model needs (the planner, issue 18).
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/modules/container/sequential.h>

#include <vector>

namespace loom::pipeline {

std::vector<double> parameter_costs(const torch::nn::Sequential& model);
std::vector<double> time_costs(torch::nn::Sequential& model, const at::Tensor& sample, int repeats = 5);

struct LayerProfile {
  double forward_s = 0;      // median forward seconds (the last layer's includes the loss)
  double backward_s = 0;     // median backward seconds: its output's gradient to its input's
  int64_t output_bytes = 0;  // the activation it hands on (what a stage boundary sends)
  int64_t param_count = 0;   // parameter elements, and their bytes
  int64_t param_bytes = 0;
};
std::vector<LayerProfile> profile_layers(torch::nn::Sequential& model, const at::Tensor& sample, int repeats = 5);

}  // namespace loom::pipeline
