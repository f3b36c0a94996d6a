// PipelineStrategy (`--strategy pipeline`): the model's layers cut into one contiguous
// stage per process (stage s = rank s), each global batch cut into --micro-batches,
// run by --schedule gpipe | 1f1b (schedule.h, pipeline_stage.h).
//
//  * The split comes from --split, else from --balance uniform | params | time
//    (stage_split.h); with `time`, rank 0 profiles the layers and sends the split to
//    everyone, so all stages agree. The split and each stage's cost are logged.
//  * Every rank reads the same global batch (the data-parallel dimension is 1): stage 0
//    uses the inputs, the last stage the targets; nothing else crosses the pipeline.
//  * One optimizer step per global batch on every stage, over the stage's own
//    parameters; the gradients are those of the whole batch, so the run computes what
//    `--strategy single` computes.
//  * The loss is the last stage's, handed to stage 0 (rank 0) for the logs.
//  * final_model() gathers every stage onto rank 0: --save writes the whole model with
//    the single-process keys.
#pragma once

#include <memory>
#include <torch/optim/optimizer.h>

#include "loom/pipeline/pipeline_stage.h"
#include "loom/train/strategy.h"

namespace loom::pipeline {

class PipelineStrategy : public train::Strategy {
 public:
  std::string name() const override { return "pipeline"; }
  void setup(const train::StrategySetup& setup) override;
  train::DataSlot data_slot() const override { return {0, 1, true}; }
  train::StepOutput step(const data::Batch& batch, const train::StepInfo& info) override;
  // The pipeline is one data rank; rank 0 speaks for it (its value is broadcast).
  double sum_over_data_ranks(double value) override;
  torch::nn::Sequential final_model() override;
  train::LocalState local_state() override;
  void finish() override;

 private:
  torch::nn::Sequential model_{nullptr};
  std::shared_ptr<comm::Context> context_;
  std::vector<int64_t> split_;
  torch::nn::Sequential layers_{nullptr};  // this rank's stage (the model's own modules)
  std::unique_ptr<PipelineStage> stage_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  train::Tracer* tracer_ = nullptr;
  bool skip_nonfinite_ = false;  // --skip-nonfinite
  int micro_batches_ = 1;
  double busy_s_ = 0, wait_s_ = 0;
  int peak_in_flight_ = 0;
};

// The stage split of `model` into `stages` stages from --split / --balance. Collective
// over `group` (every rank of the job, so all pipelines agree) for --balance time:
// group rank 0 measures, everyone receives its split. Logs the split and the stage
// costs on group rank 0.
std::vector<int64_t> choose_split(torch::nn::Sequential& model, const train::TrainConfig& config,
                                  const std::vector<int64_t>& sample_shape, int stages, comm::Group& group);

}  // namespace loom::pipeline
