// SingleStrategy: one process, no communication; the reference every distributed
// strategy must match (the equivalence contract of DESIGN.md).
#pragma once

#include <torch/optim/optimizer.h>

#include <memory>

#include "loom/strategies/options.h"
#include "loom/strategies/strategy.h"

namespace loom::strategies {

class SingleStrategy : public Strategy {
 public:
  explicit SingleStrategy(StepOptions options = {}) : options_(options) {}
  std::string name() const override { return "single"; }
  void setup(const StrategySetup& setup) override;
  DataSlot data_slot() const override { return {}; }
  StepOutput step(const data::Batch& batch, const StepInfo& info) override;
  torch::nn::Sequential final_model() override { return model_; }
  StateBytes state_bytes() override;
  LocalState local_state() override { return {model_.ptr().get(), optimizer_.get(), true, ""}; }

 private:
  StepOptions options_;
  torch::nn::Sequential model_{nullptr};
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  trace::Tracer* tracer_ = nullptr;
};

}  // namespace loom::strategies
