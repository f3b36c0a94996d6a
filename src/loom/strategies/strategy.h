// Strategy: how one global batch becomes one parameter update. The Trainer owns the
// loop (epochs, data order, evaluation, metrics, saving); a strategy owns the model
// replica / stage / shard on this rank, its optimizer and its communication.
//
// Contract, for every implementation:
//  * setup() is called once on every rank, with the same fully initialised model.
//  * step() is called once per global step on every rank that reads data
//    (data_slot().reads_data), with this rank's part of the global batch; it applies
//    exactly one optimizer update to the model (synchronous strategies: the same
//    update the single-process run would make) and returns the mean loss over `batch`.
//  * final_model() is collective (every rank calls it); on rank 0 it returns the whole
//    model with the single-process parameter names, up to date; elsewhere it may
//    return an empty holder.
//  * finish() is collective and called last; strategies that run services (parameter
//    servers) end them there.
//  * local_state() (after setup) names what this rank must save for a checkpoint to
//    resume it exactly: the module whose parameters and buffers it updates (under the
//    single-process names) and its optimizer. Strategies that cannot checkpoint throw a
//    ConfigError naming themselves.
#pragma once

#include <torch/nn/modules/container/sequential.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "loom/data/dataset.h"
#include "loom/optim/optimizer.h"

namespace loom::comm {
class Context;
}

namespace loom::trace {
class Tracer;
}

namespace loom::strategies {

// What setup() receives; the strategy's own settings come to its constructor
// (options.h).
struct StrategySetup {
  torch::nn::Sequential model;
  optim::OptimizerOptions optimizer;
  std::shared_ptr<comm::Context> context;  // null when the job is one process
  trace::Tracer* tracer = nullptr;         // never null when passed by the Trainer
  std::vector<int64_t> sample_shape;       // one input sample's shape (no batch dimension)
};

// Where this rank sits in the data-parallel dimension.
struct DataSlot {
  int rank = 0;
  int world_size = 1;
  bool reads_data = true;  // false: e.g. a parameter server process
};

struct StepInfo {
  int64_t step = 0;  // 0-based global step
  int64_t epoch = 0;
  int64_t global_batch = 0;  // samples in the whole global batch (all data-parallel ranks)
  double share = 1.0;        // this rank's samples / global_batch: its gradient's weight
};

// The training state one rank keeps (Strategy::local_state()).
struct LocalState {
  torch::nn::Module* model = nullptr;            // never null
  torch::optim::Optimizer* optimizer = nullptr;  // null: the optimizer runs elsewhere (parameter servers)
  bool replicated = false;  // every data rank holds the same state (a job may resume with another size)
  std::string layout;       // how the model is cut across ranks ("4,3"); a resumed job must cut it the same way
  // Rank 0 saves alone, with no barrier: asynchronous workers, whose state lives on the
  // servers (the others may be at other steps, or gone). They resume from its part.
  bool rank0_alone = false;
  // The model is replicated and each rank holds its own range of the optimizer state
  // (allreduce --zero): a job may resume with another size, resharding that state.
  bool reshardable = false;
};

struct StepOutput {
  double loss = 0;       // mean loss over this rank's samples
  int64_t samples = 0;   // this rank's samples
  double compute_s = 0;  // seconds of this rank's own work (forward + backward), not waiting
  bool skipped = false;  // --skip-nonfinite: no optimizer step (same on every rank)
};

class Strategy {
 public:
  virtual ~Strategy() = default;
  virtual std::string name() const = 0;
  virtual void setup(const StrategySetup& setup) = 0;
  virtual DataSlot data_slot() const = 0;
  virtual StepOutput step(const data::Batch& batch, const StepInfo& info) = 0;
  virtual torch::nn::Sequential final_model() = 0;
  // Collective over the ranks that read data: the sum of `value` over them (used to
  // report the global loss). One process: `value`.
  virtual double sum_over_data_ranks(double value) { return value; }
  // Collective over the ranks that read data: every data rank's `value`, by data rank.
  virtual std::vector<double> gather_over_data_ranks(double value) { return {value}; }
  virtual LocalState local_state();
  // Data-parallel strategies (single, allreduce): this rank's bytes of optimizer state
  // and of gradients now, for the metrics summary; {-1, -1}: not reported.
  struct StateBytes {
    int64_t optimizer = -1;
    int64_t gradients = -1;
  };
  virtual StateBytes state_bytes() { return {}; }
  // Checkpoints: state kept outside this process (parameter servers) is written into
  // `step_dir` now. Called on every rank, before the checkpoint counts as complete.
  virtual void checkpoint_services(const std::string& step_dir) { (void)step_dir; }
  virtual void finish() {}
};

}  // namespace loom::strategies
