// TorchScript modules as loom models: a network built and saved in Python
// (`torch.jit.script(model).save(path)`) trained by every strategy.
//
// load_scripted() returns a torch::nn::Sequential whose parameters and buffers ARE the
// script module's (the same tensors, not copies), under the script module's own names
// ("inp.weight", "block.0.norm.bias", ...). So a state_dict of it (train/model_io.h) is
// what Python's `model.state_dict()` holds, and Python's `model.load_state_dict(
// torch.load(path))` takes a model file loom wrote. Its forward runs the script's
// forward (one tensor in, one tensor out); train()/eval() set the script's `training`.
//
// When the module's top level is an nn.Sequential, the result's layers are its children
// (a pipeline can cut between them); otherwise the result is one layer that runs the
// whole module, and `sequential` is false.
//
// Thread-safety: distinct loads are independent; a loaded model is used like any
// torch::nn::Module (one thread at a time).
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/modules/container/sequential.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace torch::jit {
struct Module;
}

namespace loom::models {

struct ScriptedModel {
  torch::nn::Sequential model{nullptr};        // shares its tensors with `script`
  std::shared_ptr<torch::jit::Module> script;  // the loaded module
  std::string type_name;                       // e.g. "__torch__.ResMlp"
  bool sequential = false;                     // top level is torch.nn.Sequential
};

// True when --model names a file rather than a built-in model: it ends in ".pt", ".pth"
// or ".ts", or contains a '/'.
bool is_model_file(const std::string& name);

// Throws ModelError naming `path` when the file is missing or is not a TorchScript
// module (e.g. a state_dict or a pickled Python model), or when it holds no parameters.
ScriptedModel load_scripted(const std::string& path);

// Writes the script module with `state` (name -> tensor, as train/model_io.h's
// state_dict) copied into it, atomically; loadable with Python's torch.jit.load.
// A name of `state` the module lacks, or a module tensor `state` lacks, is a ModelError.
void save_scripted(const ScriptedModel& scripted, const std::vector<std::pair<std::string, at::Tensor>>& state,
                   const std::string& path);

}  // namespace loom::models
