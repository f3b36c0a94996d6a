#include "loom/strategies/single.h"

#include <torch/torch.h>

#include "loom/optim/optimizer.h"
#include "loom/strategies/step.h"

namespace loom::strategies {

void SingleStrategy::setup(const StrategySetup& s) {
  model_ = s.model;
  tracer_ = s.tracer;
  optimizer_ = optim::make_optimizer(model_->parameters(), s.optimizer);
}

StepOutput SingleStrategy::step(const data::Batch& batch, const StepInfo&) {
  optimizer_->zero_grad();
  const Computed c = compute_gradients(model_, batch, *tracer_, options_);
  return {c.loss, batch.size(), c.compute_s, optimizer_step(*optimizer_, options_, *tracer_)};
}

Strategy::StateBytes SingleStrategy::state_bytes() {
  return {optim::state_bytes(*optimizer_), gradient_bytes(*model_)};
}

}  // namespace loom::strategies
