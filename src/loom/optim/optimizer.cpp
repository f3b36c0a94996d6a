#include "loom/optim/optimizer.h"

#include <torch/torch.h>

#include "loom/core/choice.h"
#include "loom/core/error.h"

namespace loom::optim {

namespace {
constexpr Choice<OptimizerKind> kOptimizers[] = {
    {"sgd", OptimizerKind::sgd}, {"adam", OptimizerKind::adam}, {"adamw", OptimizerKind::adamw}};
}  // namespace

OptimizerKind parse_optimizer(const std::string& name) { return parse_choice("optimizer", name, kOptimizers); }
const char* optimizer_name(OptimizerKind kind) { return choice_name(kind, kOptimizers); }

int64_t state_bytes(const torch::optim::Optimizer& optimizer) {
  int64_t bytes = 0;
  for (const auto& [key, state] : optimizer.state()) {
    if (const auto* s = dynamic_cast<const torch::optim::SGDParamState*>(state.get())) {
      if (s->momentum_buffer().defined()) bytes += static_cast<int64_t>(s->momentum_buffer().nbytes());
    } else if (const auto* a = dynamic_cast<const torch::optim::AdamParamState*>(state.get())) {
      for (const at::Tensor* t : {&a->exp_avg(), &a->exp_avg_sq(), &a->max_exp_avg_sq()}) {
        if (t->defined()) bytes += static_cast<int64_t>(t->nbytes());
      }
    } else if (const auto* w = dynamic_cast<const torch::optim::AdamWParamState*>(state.get())) {
      for (const at::Tensor* t : {&w->exp_avg(), &w->exp_avg_sq(), &w->max_exp_avg_sq()}) {
        if (t->defined()) bytes += static_cast<int64_t>(t->nbytes());
      }
    }
  }
  return bytes;
}

std::unique_ptr<torch::optim::Optimizer> make_optimizer(std::vector<at::Tensor> parameters, const OptimizerOptions& o) {
  switch (o.kind) {
    case OptimizerKind::sgd:
      return std::make_unique<torch::optim::SGD>(
          std::move(parameters), torch::optim::SGDOptions(o.lr).momentum(o.momentum).weight_decay(o.weight_decay));
    case OptimizerKind::adam:
      return std::make_unique<torch::optim::Adam>(
          std::move(parameters),
          torch::optim::AdamOptions(o.lr).betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(o.weight_decay));
    case OptimizerKind::adamw:
      return std::make_unique<torch::optim::AdamW>(
          std::move(parameters),
          torch::optim::AdamWOptions(o.lr).betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(o.weight_decay));
  }
  LOOM_THROW(ConfigError, "unknown optimizer kind {}", static_cast<int>(o.kind));
}

}  // namespace loom::optim
