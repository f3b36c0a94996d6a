// PipelineStage: runs one stage of a pipeline for one global step: the forwards and
// backwards of its micro-batches in the order of a Schedule, exchanging activations and
// gradients with its neighbours (p2p.h). The building block of --strategy pipeline and
// hybrid, usable on its own by people who write their own loop:
//
//   pipeline::PipelineStage stage(my_layers, pipeline_group, {ScheduleKind::one_f_one_b});
//   for (...) {
//     optimizer.zero_grad();
//     double loss = stage.run(rows, inputs_or_undefined, targets_or_undefined, micro_batches);
//     optimizer.step();
//   }
//
// Contract: stage s is rank s of `group`; every stage calls run() with the same number
// of rows and micro-batches (cut by micro_batch_sizes()). Stage 0 passes the inputs, the last stage the targets
// (targets never travel through the pipeline); other stages pass undefined tensors.
// Each micro-batch's loss is scaled by its share of the batch, so after run() the
// stage's parameter gradients (accumulated, not zeroed) are those of the mean loss over
// the whole batch: one optimizer step then equals the single-process step. run()
// returns that mean loss on the first and the last stage (the last stage sends it to
// the first) and 0 elsewhere. It does not step the optimizer.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/modules/container/sequential.h>

#include <functional>
#include <memory>
#include <vector>

#include "loom/pipeline/schedule.h"

namespace loom::comm {
class Group;
}
namespace loom::trace {
class Tracer;
}

namespace loom::pipeline {

class P2p;

struct PipelineStageOptions {
  ScheduleKind schedule = ScheduleKind::one_f_one_b;
  // The loss of a micro-batch (mean over its rows); default: cross-entropy.
  std::function<at::Tensor(const at::Tensor& output, const at::Tensor& targets)> loss;
  trace::Tracer* tracer = nullptr;  // may be null
  // Called right before each micro-batch's backward; `last` for the step's last one
  // (backwards run in ascending order). E.g. to let DistributedDataParallel reduce only
  // once the gradients of every micro-batch are accumulated (hybrid parallelism).
  std::function<void(int micro, bool last)> before_backward;
};

// What the last run() did on this stage.
struct StageStepStats {
  double busy_s = 0;             // in forward and backward
  double wait_s = 0;             // blocked on a neighbour
  int64_t peak_stash_bytes = 0;  // see below
  int peak_in_flight = 0;        // micro-batches between forward and backward, at most
};
// Stashed activations: for each micro-batch between its forward and its backward, the
// bytes of the stage's input and of every layer's output (distinct storages: views such
// as flatten count once). These are the tensors autograd keeps for the backward.

class PipelineStage {
 public:
  PipelineStage(torch::nn::Sequential stage_layers, comm::Group& group, PipelineStageOptions options);
  ~PipelineStage();

  int stage() const;
  int stages() const;

  double run(int64_t rows, const at::Tensor& inputs, const at::Tensor& targets, int micro_batches);
  const StageStepStats& last_step() const { return stats_; }
  // The largest value of last_step().peak_stash_bytes over all steps so far.
  int64_t peak_stash_bytes() const { return peak_stash_ever_; }

 private:
  struct InFlight;
  torch::nn::Sequential layers_;
  comm::Group& group_;
  PipelineStageOptions options_;
  std::unique_ptr<P2p> p2p_;
  StageStepStats stats_;
  int64_t peak_stash_ever_ = 0;
};

}  // namespace loom::pipeline
