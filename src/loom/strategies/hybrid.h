// HybridStrategy: D pipelines side by side (`--strategy hybrid --dp D --pp P`), each a
// data-parallel replica of the model cut into P stages (hybrid/mesh.h for the rank
// layout). `--strategy pipeline` is the same strategy with one replica, every rank a
// stage (HybridOptions::pp = 0).
//
//  * Data: the global batch is divided among the D replicas by the partitioner (every
//    scheme, proportional weights included); every stage of replica d reads replica d's
//    part; within the pipeline it is cut into micro-batches.
//  * Each replica runs the pipeline schedule (pipeline/pipeline_stage.h); the split is
//    decided once for the job (pipeline_split.h; with Balance::time, by rank 0). Stage 0
//    uses the inputs, the last stage the targets; nothing else crosses the pipeline.
//  * Gradients (D > 1): each stage's DistributedDataParallel over its stage group (the
//    same stage in every replica) averages its gradients, weighted by each replica's
//    share of the global batch. It is held back (no_sync) for all but the step's last
//    micro-batch, so its buckets are reduced during that last backward, overlapping the
//    earlier stages' remaining backwards; then every stage steps over its own
//    parameters, once per global batch.
//  * The loss is the last stage's, handed to stage 0 for the logs.
//  * final_model() gathers replica 0's stages onto rank 0: --save writes one model file
//    with the single-process keys.
//
// A synchronous run computes what `--strategy single` computes.
#pragma once

#include <torch/optim/optimizer.h>

#include <memory>

#include "loom/dp/distributed_data_parallel.h"
#include "loom/hybrid/mesh.h"
#include "loom/pipeline/pipeline_stage.h"
#include "loom/strategies/options.h"
#include "loom/strategies/strategy.h"

namespace loom::strategies {

class HybridStrategy : public Strategy {
 public:
  HybridStrategy(HybridOptions options, StepOptions step) : options_(std::move(options)), step_(step) {}
  // "pipeline" with one replica of every rank (pp = 0), else "hybrid".
  std::string name() const override { return options_.pp == 0 ? "pipeline" : "hybrid"; }
  void setup(const StrategySetup& setup) override;
  DataSlot data_slot() const override;
  StepOutput step(const data::Batch& batch, const StepInfo& info) override;
  // Over the replicas; stage 0 of each replica speaks for it.
  double sum_over_data_ranks(double value) override;
  std::vector<double> gather_over_data_ranks(double value) override;
  torch::nn::Sequential final_model() override;
  LocalState local_state() override;
  void finish() override;

 private:
  HybridOptions options_;
  StepOptions step_;
  torch::nn::Sequential model_{nullptr};
  std::shared_ptr<comm::Context> context_;
  std::unique_ptr<hybrid::Mesh> mesh_;
  std::vector<int64_t> split_;
  torch::nn::Sequential layers_{nullptr};             // this rank's stage (the model's own modules)
  std::unique_ptr<dp::DistributedDataParallel> ddp_;  // null with one replica or a stage without parameters
  std::unique_ptr<pipeline::PipelineStage> stage_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  trace::Tracer* tracer_ = nullptr;
  double busy_s_ = 0, wait_s_ = 0;
  int peak_in_flight_ = 0;
};

}  // namespace loom::strategies
