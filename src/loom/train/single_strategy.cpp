#include "loom/train/single_strategy.h"

#include <torch/torch.h>

#include "loom/core/error.h"
#include "loom/train/tracer.h"

namespace loom::train {

void SingleStrategy::setup(const StrategySetup& s) {
  model_ = s.model;
  tracer_ = s.tracer;
  optimizer_ = make_optimizer(model_->parameters(), s.optimizer);
}

StepOutput SingleStrategy::step(const data::Batch& batch, const StepInfo&) {
  optimizer_->zero_grad();
  const at::Tensor loss = forward_backward(model_, batch, *tracer_);
  {
    auto span = tracer_->span("optimizer");
    optimizer_->step();
  }
  return {loss.item<double>(), batch.size()};
}

}  // namespace loom::train
