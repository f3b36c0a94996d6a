#include "loom/train/single_strategy.h"

#include <torch/torch.h>

#include "loom/core/error.h"
#include "loom/train/nonfinite.h"
#include "loom/train/tracer.h"
#include "loom/train/train_config.h"

namespace loom::train {

void SingleStrategy::setup(const StrategySetup& s) {
  model_ = s.model;
  tracer_ = s.tracer;
  optimizer_ = make_optimizer(model_->parameters(), s.optimizer);
  skip_nonfinite_ = s.config && s.config->skip_nonfinite > 0;
}

StepOutput SingleStrategy::step(const data::Batch& batch, const StepInfo&) {
  optimizer_->zero_grad();
  const at::Tensor loss = forward_backward(model_, batch, *tracer_);
  StepOutput out{loss.item<double>(), batch.size()};
  {
    auto span = tracer_->span("optimizer");
    out.skipped = step_unless_nonfinite(*optimizer_, skip_nonfinite_);
  }
  return out;
}

}  // namespace loom::train
