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
  at::Tensor loss;
  {
    auto span = tracer_->span("forward");
    loss = training_loss(model_->forward(batch.inputs), batch.targets);
  }
  {
    auto span = tracer_->span("backward");
    loss.backward();
  }
  {
    auto span = tracer_->span("optimizer");
    optimizer_->step();
  }
  return {loss.item<double>(), batch.size()};
}

}  // namespace loom::train
