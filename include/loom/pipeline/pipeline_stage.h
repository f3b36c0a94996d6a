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

#include <cstdint>
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

// ---- Stage fusion -----------------------------------------------------------
// Stage fusion: the whole model from its stages, for --save and evaluation.
//
// Every rank of a pipeline builds the same whole model (same structure); stage s trains
// the layers of its range (the stage's layers are those very modules, so the full
// model's entries for that range are always current on rank s). gather_stages() makes
// rank 0's whole model current: every other stage sends the parameters and buffers of
// its layers, and rank 0 copies them in. Keys and order are the single-process model's.
class Group;
}  // namespace loom::pipeline

namespace loom::pipeline {

// A Sequential of layers [begin, end) of `full`, sharing their modules (not copies) and
// keeping their names ("3", "4", ...), so its parameter names are the whole model's.
torch::nn::Sequential stage_layers(const torch::nn::Sequential& full, int64_t begin, int64_t end);

// Collective over `group`, whose rank s holds stage s of `split`. Afterwards rank 0's
// `full` holds every stage's current parameters and buffers.
void gather_stages(torch::nn::Sequential& full, const std::vector<int64_t>& split, comm::Group& group);

}  // namespace loom::pipeline
