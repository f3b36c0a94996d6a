// Model state and model files (the model-file contract of DESIGN.md).
//
// A model file is torch::pickle_save of a c10::Dict<std::string, at::Tensor> keyed
// exactly like the single-process model's named_parameters() followed by
// named_buffers(). Python's torch.load(path) returns that dict. Files are written
// atomically (see core/atomic_file.h).
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <utility>
#include <vector>

namespace torch::nn {
class Module;
}

namespace loom::train {

// Ordered (name, tensor) pairs; the tensors alias the module's (no copies).
using StateDict = std::vector<std::pair<std::string, at::Tensor>>;

StateDict state_dict(const torch::nn::Module& module);

// Copies `state` into `module` in place. Strict: every key of the module must be
// present with the same shape and dtype, and no extra key may exist; otherwise a
// ModelError naming `source`, the first offending key and the reason.
void load_state_dict(torch::nn::Module& module, const StateDict& state, const std::string& source);

void save_model_file(const std::string& path, const StateDict& state);
// "" when every floating-point tensor of `state` is finite; otherwise names the first
// tensor that is not and counts its NaN / infinite values ("'1.weight' holds 3 NaN or
// infinite values of 200704").
std::string describe_nonfinite(const StateDict& state);
// Throws CheckpointError naming the path when the file is missing or is not a model file.
StateDict load_model_file(const std::string& path);

}  // namespace loom::train
