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

namespace {
// Adam and AdamW keep the same state under two unrelated types.
template <typename AdamState>
ParamStateView view_adam_like(const AdamState& s) {
  ParamStateView v;
  v.step = s.step();
  for (const auto& [name, t] : {std::pair<const char*, const at::Tensor&>{"exp_avg", s.exp_avg()},
                                {"exp_avg_sq", s.exp_avg_sq()},
                                {"max_exp_avg_sq", s.max_exp_avg_sq()}}) {
    if (t.defined()) v.tensors.emplace_back(name, t);
  }
  return v;
}

template <typename AdamState>
std::unique_ptr<torch::optim::OptimizerParamState> make_adam_like(const ParamStateView& v) {
  auto s = std::make_unique<AdamState>();
  s->step(v.step);
  s->exp_avg(v.get("exp_avg"));
  s->exp_avg_sq(v.get("exp_avg_sq"));
  if (v.get("max_exp_avg_sq").defined()) s->max_exp_avg_sq(v.get("max_exp_avg_sq"));
  return s;
}

bool is_adam_like(const torch::optim::Optimizer& o) {
  return dynamic_cast<const torch::optim::Adam*>(&o) || dynamic_cast<const torch::optim::AdamW*>(&o);
}
}  // namespace

at::Tensor ParamStateView::get(const std::string& name) const {
  for (const auto& [n, t] : tensors) {
    if (n == name) return t;
  }
  return {};
}

ParamStateView view_state(const torch::optim::OptimizerParamState& state) {
  if (const auto* s = dynamic_cast<const torch::optim::SGDParamState*>(&state)) {
    ParamStateView v;
    if (s->momentum_buffer().defined()) v.tensors.emplace_back("momentum_buffer", s->momentum_buffer());
    return v;
  }
  if (const auto* a = dynamic_cast<const torch::optim::AdamParamState*>(&state)) return view_adam_like(*a);
  if (const auto* w = dynamic_cast<const torch::optim::AdamWParamState*>(&state)) return view_adam_like(*w);
  return {};
}

std::vector<std::string> state_names(const torch::optim::Optimizer& optimizer) {
  if (is_adam_like(optimizer)) return {"exp_avg", "exp_avg_sq"};
  return {"momentum_buffer"};
}

std::unique_ptr<torch::optim::OptimizerParamState> make_state(const torch::optim::Optimizer& optimizer,
                                                              const ParamStateView& view) {
  if (dynamic_cast<const torch::optim::Adam*>(&optimizer)) return make_adam_like<torch::optim::AdamParamState>(view);
  if (dynamic_cast<const torch::optim::AdamW*>(&optimizer)) return make_adam_like<torch::optim::AdamWParamState>(view);
  auto s = std::make_unique<torch::optim::SGDParamState>();
  s->momentum_buffer(view.get("momentum_buffer"));
  return s;
}

int64_t state_bytes(const torch::optim::Optimizer& optimizer) {
  int64_t bytes = 0;
  for (const auto& [key, state] : optimizer.state()) {
    for (const auto& [name, t] : view_state(*state).tensors) bytes += static_cast<int64_t>(t.nbytes());
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
