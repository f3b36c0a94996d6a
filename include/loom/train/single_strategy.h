// SingleStrategy: one process, no communication; the reference every distributed
// strategy must match (the equivalence contract of DESIGN.md).
#pragma once

#include <torch/optim/optimizer.h>

#include <memory>

#include "loom/train/strategy.h"

namespace loom::train {

class SingleStrategy : public Strategy {
 public:
  std::string name() const override { return "single"; }
  void setup(const StrategySetup& setup) override;
  DataSlot data_slot() const override { return {}; }
  StepOutput step(const data::Batch& batch, const StepInfo& info) override;
  torch::nn::Sequential final_model() override { return model_; }
  LocalState local_state() override { return {model_.ptr().get(), optimizer_.get(), true, ""}; }

 private:
  torch::nn::Sequential model_{nullptr};
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  Tracer* tracer_ = nullptr;
  bool skip_nonfinite_ = false;
};

}  // namespace loom::train
