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
// The losses, in one place so that every strategy and the pipeline stages compute the
// same number (the equivalence contract of DESIGN.md). Each is a mean over the batch's
// rows (and over the elements of a row), so a batch split into shares weighted by their
// rows sums back to it.
//
//   cross-entropy     `output` [N, C] logits, `targets` int64 [N] class indices
//   mse               mean squared error; `targets` float, the shape of `output`
//   bce-with-logits   binary cross-entropy on logits; `targets` float in [0, 1]
//
// For mse and bce-with-logits, targets of another shape with as many elements (e.g.
// [N] against an output [N, 1]) are viewed as the output's shape, and integer targets
// are converted to the output's dtype. A mismatch in element count is a ModelError.
enum class LossKind { cross_entropy, mse, bce_with_logits };
LossKind parse_loss(const std::string& name);  // ConfigError naming --loss and the allowed values
const char* loss_name(LossKind kind);          // "cross-entropy" | "mse" | "bce-with-logits"
// True for the losses whose targets are class indices (cross-entropy).
bool takes_class_targets(LossKind kind);

at::Tensor training_loss(LossKind kind, const at::Tensor& output, const at::Tensor& targets);
// cross-entropy (the default).
at::Tensor training_loss(const at::Tensor& logits, const at::Tensor& targets);
// `targets` as the losses above read them against `output` (mse, bce: viewed as the
// output's shape and dtype; cross-entropy: unchanged).
at::Tensor aligned_targets(LossKind kind, const at::Tensor& output, const at::Tensor& targets);

}  // namespace loom::models
