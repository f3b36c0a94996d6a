// AllreduceStrategy (`--strategy allreduce`): data parallelism over all ranks.
//
//  --sync grads (default): every step, DistributedDataParallel averages the gradients
//    (bucketed, overlapped with backward, each rank weighted by its share of the global
//    batch), then every rank applies the same optimizer step: the run computes what
//    `--strategy single` computes, within fp32 reduction-order tolerance.
//  --sync params --sync-every K: local SGD. Each rank steps on its own gradients and
//    every K steps the parameters are averaged, weighted by the samples each rank saw.
//    K = 1 with plain SGD equals gradient averaging.
#pragma once

#include <memory>
#include <torch/optim/optimizer.h>

#include "loom/dp/distributed_data_parallel.h"
#include "loom/dp/model_averager.h"
#include "loom/train/strategy.h"

namespace loom::dp {

// The DistributedDataParallel settings of `loom train` flags (--bucket-mb, a first
// bucket of at most 1 MiB, --find-unused-parameters, --grad-compression), with spans on
// `tracer`. Shared by the allreduce and hybrid strategies.
DdpOptions ddp_options(const train::TrainConfig& config, train::Tracer* tracer);

class AllreduceStrategy : public train::Strategy {
 public:
  std::string name() const override { return "allreduce"; }
  void setup(const train::StrategySetup& setup) override;
  train::DataSlot data_slot() const override;
  train::StepOutput step(const data::Batch& batch, const train::StepInfo& info) override;
  double sum_over_data_ranks(double value) override;
  std::vector<double> gather_over_data_ranks(double value) override;
  torch::nn::Sequential final_model() override;
  // --sync grads: every rank holds the same state; --sync params: checkpoints are taken
  // right after an average (--checkpoint-every is a multiple of --sync-every).
  train::LocalState local_state() override { return {model_.ptr().get(), optimizer_.get(), ddp_ != nullptr, ""}; }

 private:
  torch::nn::Sequential model_{nullptr};
  std::shared_ptr<comm::Context> context_;
  std::unique_ptr<DistributedDataParallel> ddp_;      // --sync grads
  std::unique_ptr<ModelAverager> averager_;           // --sync params
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  train::Tracer* tracer_ = nullptr;
  bool skip_nonfinite_ = false;  // --skip-nonfinite
  int64_t sync_every_ = 1;
  double slowdown_ = 1.0;  // --bench-slowdown factor on this rank (benchmark aid)
};

}  // namespace loom::dp
