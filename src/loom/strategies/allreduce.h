// AllreduceStrategy (`--strategy allreduce`): data parallelism over all ranks.
//
//  SyncMode::grads (default): every step, DistributedDataParallel averages the gradients
//    (bucketed, overlapped with backward, each rank weighted by its share of the global
//    batch), then every rank applies the same optimizer step: the run computes what
//    `--strategy single` computes, within fp32 reduction-order tolerance.
//  SyncMode::params, sync_every K: local SGD. Each rank steps on its own gradients and
//    every K steps the parameters are averaged, weighted by the samples each rank saw.
//    K = 1 with plain SGD equals gradient averaging.
#pragma once

#include <torch/optim/optimizer.h>

#include <memory>

#include "loom/dp/distributed_data_parallel.h"
#include "loom/dp/model_averager.h"
#include "loom/strategies/options.h"
#include "loom/strategies/strategy.h"

namespace loom::strategies {

class AllreduceStrategy : public Strategy {
 public:
  AllreduceStrategy(AllreduceOptions options, StepOptions step) : options_(std::move(options)), step_(step) {}
  std::string name() const override { return "allreduce"; }
  void setup(const StrategySetup& setup) override;
  DataSlot data_slot() const override;
  StepOutput step(const data::Batch& batch, const StepInfo& info) override;
  double sum_over_data_ranks(double value) override;
  std::vector<double> gather_over_data_ranks(double value) override;
  torch::nn::Sequential final_model() override;
  // grads: every rank holds the same state; params: checkpoints are taken right after
  // an average (the CLI requires --checkpoint-every to be a multiple of --sync-every).
  // --zero: each rank holds its own range of the optimizer state (not replicated).
  StateBytes state_bytes() override;
  LocalState local_state() override {
    return {model_.ptr().get(), optimizer_.get(), ddp_ != nullptr && options_.zero == 0, "", false, options_.zero > 0};
  }

 private:
  AllreduceOptions options_;
  StepOptions step_;
  torch::nn::Sequential model_{nullptr};
  std::shared_ptr<comm::Context> context_;
  std::unique_ptr<dp::DistributedDataParallel> ddp_;  // SyncMode::grads
  std::unique_ptr<dp::ModelAverager> averager_;       // SyncMode::params
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  trace::Tracer* tracer_ = nullptr;
};

}  // namespace loom::strategies
