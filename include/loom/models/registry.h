// Built-in models, by name. Every model is a torch::nn::Sequential, so its parameter
// names ("0.weight", "3.bias", ...) match Python's nn.Sequential of the same layers and
// the pipeline strategy can cut it into stages.
//
//   mlp       flatten -> linear(in, 256) -> relu -> linear(256, 128) -> relu -> linear(128, C)
//   cnn       conv(1->32, 3x3, pad 1) -> relu -> maxpool 2 -> conv(32->64, 3x3, pad 1) -> relu
//             -> maxpool 2 -> flatten -> linear(64*H/4*W/4 -> 128) -> relu -> linear(128 -> C)
//   deep-mlp  flatten -> linear(in, width) -> relu -> (depth-2) x [linear(width, width) -> relu]
//             -> linear(width, C); many small layers, for pipeline and per-layer overhead
//
// Construction is deterministic: parameters are initialised from ModelOptions::seed with
// a private generator, whatever the global RNG state. make_model() may be called from
// several threads at once (the global generator is borrowed under a lock).
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/modules/container/sequential.h>

#include <cstdint>
#include <string>
#include <vector>

namespace loom::models {

struct ModelOptions {
  std::vector<int64_t> sample_shape = {1, 28, 28};  // C, H, W of one input
  int64_t num_classes = 10;
  uint64_t seed = 0;
  int64_t width = 256;  // deep-mlp hidden width
  int64_t depth = 12;   // deep-mlp number of linear layers (>= 2)
};

torch::nn::Sequential make_model(const std::string& name, const ModelOptions& options);
std::vector<std::string> model_names();

// ---- The training loss ------------------------------------------------------
// The loss every built-in model trains with, in one place so that every strategy and
// the pipeline stages compute the same number (the equivalence contract of DESIGN.md).
// Mean cross-entropy over the batch: `logits` [N, C], `targets` [N] class indices.
at::Tensor training_loss(const at::Tensor& logits, const at::Tensor& targets);

}  // namespace loom::models
