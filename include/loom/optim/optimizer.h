// Optimizers by name, with one options struct shared by every strategy (and by the
// parameter server, which runs the same maths on its shard).
#pragma once

#include <torch/optim/optimizer.h>

#include <memory>
#include <string>
#include <vector>

namespace loom::optim {

enum class OptimizerKind { sgd, adam, adamw };
// "sgd" | "adam" | "adamw" (the --optimizer flag); anything else is a ConfigError.
OptimizerKind parse_optimizer(const std::string& name);
const char* optimizer_name(OptimizerKind kind);

struct OptimizerOptions {
  OptimizerKind kind = OptimizerKind::sgd;
  double lr = 0.01;
  double momentum = 0.0;                          // sgd
  double weight_decay = 0.0;                      // sgd and adam: L2, as in libtorch; adamw: decoupled
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;  // adam and adamw
};

// Bytes of per-parameter state the optimizer holds now (SGD's momentum buffers, Adam's
// and AdamW's moments; 0 before the first step). Other optimizers count 0.
int64_t state_bytes(const torch::optim::Optimizer& optimizer);

// One parameter's optimizer state as named elementwise tensors (the names of
// state_names(): SGD's "momentum_buffer"; Adam's and AdamW's "exp_avg" and "exp_avg_sq",
// and "max_exp_avg_sq" when defined) and Adam's step count (0 for SGD). Undefined
// tensors are left out. What checkpoints that reshard the state read and write (ZeRO).
struct ParamStateView {
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  int64_t step = 0;
  at::Tensor get(const std::string& name) const;  // undefined when absent
};
ParamStateView view_state(const torch::optim::OptimizerParamState& state);
// The elementwise kinds of state `optimizer` keeps per parameter, in a fixed order.
std::vector<std::string> state_names(const torch::optim::Optimizer& optimizer);
// A param state of `optimizer`'s kind holding `view` (the inverse of view_state).
std::unique_ptr<torch::optim::OptimizerParamState> make_state(const torch::optim::Optimizer& optimizer,
                                                              const ParamStateView& view);

std::unique_ptr<torch::optim::Optimizer> make_optimizer(std::vector<at::Tensor> parameters,
                                                        const OptimizerOptions& options);

}  // namespace loom::optim
