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

std::unique_ptr<torch::optim::Optimizer> make_optimizer(std::vector<at::Tensor> parameters,
                                                        const OptimizerOptions& options);

}  // namespace loom::optim
