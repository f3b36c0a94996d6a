// HybridStrategy (`--strategy hybrid --dp D --pp P`): D pipelines side by side, each a
// data-parallel replica of the model cut into P stages (mesh.h for the rank layout).
//
//  * Data: the global batch is divided among the D replicas by the partitioner (every
//    scheme, proportional weights included); every stage of replica d reads replica d's
//    part; within the pipeline it is cut into --micro-batches.
//  * Each replica runs the pipeline schedule (pipeline_stage.h); the split is decided
//    once for the job (--split / --balance; with `time`, by rank 0).
//  * Gradients: each stage's DistributedDataParallel over its stage group (the same
//    stage in every replica) averages its gradients, weighted by each replica's share
//    of the global batch. It is held back (no_sync) for all but the step's last
//    micro-batch, so its buckets are reduced during that last backward, overlapping the
//    earlier stages' remaining backwards; then every stage steps.
//  * final_model() gathers replica 0's stages onto rank 0: --save writes one model file
//    with the single-process keys.
//
// A synchronous run computes what `--strategy single` computes.
#pragma once

#include <memory>
#include <torch/optim/optimizer.h>

#include "loom/dp/distributed_data_parallel.h"
#include "loom/hybrid/mesh.h"
#include "loom/pipeline/pipeline_stage.h"
#include "loom/train/strategy.h"

namespace loom::hybrid {

class HybridStrategy : public train::Strategy {
 public:
  std::string name() const override { return "hybrid"; }
  void setup(const train::StrategySetup& setup) override;
  train::DataSlot data_slot() const override;
  train::StepOutput step(const data::Batch& batch, const train::StepInfo& info) override;
  // Over the replicas; stage 0 of each replica speaks for it.
  double sum_over_data_ranks(double value) override;
  std::vector<double> gather_over_data_ranks(double value) override;
  torch::nn::Sequential final_model() override;
  train::LocalState local_state() override;
  void finish() override;

 private:
  torch::nn::Sequential model_{nullptr};
  std::shared_ptr<comm::Context> context_;
  std::unique_ptr<Mesh> mesh_;
  std::vector<int64_t> split_;
  torch::nn::Sequential layers_{nullptr};  // this rank's stage (the model's own modules)
  std::unique_ptr<dp::DistributedDataParallel> ddp_;  // null for a stage without parameters
  std::unique_ptr<pipeline::PipelineStage> stage_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  train::Tracer* tracer_ = nullptr;
  bool skip_nonfinite_ = false;  // --skip-nonfinite
  int micro_batches_ = 1;
  double busy_s_ = 0, wait_s_ = 0;
};

}  // namespace loom::hybrid
