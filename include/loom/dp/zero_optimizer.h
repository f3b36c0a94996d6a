// ZeroRedundancyOptimizer: ZeRO stages 1 and 2 (Rajbhandari et al., SC'20) for any optimizer
// loom makes, the C++ counterpart of torch.distributed.optim.ZeroRedundancyOptimizer.
// Each data-parallel rank keeps optimizer state for one contiguous range of the flat
// parameter space only, and updates only that range; the parameters are then
// all-gathered, so every rank ends the step with the same full model.
//
//   loom::dp::DistributedDataParallel ddp(model, ctx->world());
//   loom::dp::ZeroRedundancyOptimizer opt(model->parameters(), ctx->world(), optimizer_options);
//   for (...) {
//     opt.zero_grad();
//     loss_fn(model->forward(x), y).backward();
//     ddp.finish();   // every rank holds the global-batch gradients
//     opt.step();     // this rank's range, then an all-gather of the parameters (collective)
//   }
//
// Stage 2 adds `opt.shard_gradients(ddp);` after constructing both: DDP then
// reduce-scatters each bucket during backward and keeps only this rank's range of the
// gradients, which step() reads (param.grad stays undefined; docs/zero.md).
//
// The flat parameter space: the trainable parameters, in the order given, end to end.
// Construction moves them into one flat buffer (each parameter becomes a view of it, so
// the all-gather lands in the model with no copy) and splits it into one range per
// rank, in rank order, proportional to ZeroOptions::shard_weights (equal by default): a
// worker with less memory can own less. A parameter may straddle two ranges; each owner
// updates its part. The optimizers loom has (SGD with momentum, Adam, AdamW; optim/optimizer.h)
// are elementwise, so stepping the ranges apart computes exactly what one optimizer over
// the whole model computes.
//
// It is a torch::optim::Optimizer over the full parameters: zero_grad() clears every
// gradient, param_groups() lists the model's parameters (what the non-finite check
// reads), and save()/load() write and read this rank's state only (its range). step()
// is collective: every member calls it, in the same order as the group's other
// collectives. Construction is not (the ranges are a pure function of the sizes and
// weights). Ownership: the Group must outlive this object. One training thread.
#pragma once

#include <torch/optim/optimizer.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "loom/optim/optimizer.h"

namespace loom::comm {
class Group;
}

namespace loom::dp {

class DistributedDataParallel;

struct ZeroOptions {
  // Each rank's share of the flat parameter space, by group rank: finite, >= 0, with a
  // positive sum, one per member (else ConfigError). Empty: equal shares.
  std::vector<double> shard_weights;
};

// The split of `total` elements into one contiguous count per weight, proportional to
// the weights (largest remainder; ties to the lower rank): what each rank owns.
std::vector<int64_t> zero_shard_counts(int64_t total, const std::vector<double>& weights);

class ZeroRedundancyOptimizer : public torch::optim::Optimizer {
 public:
  // `parameters`: the model's trainable parameters, the same list on every rank (one
  // dtype: float32 or float64; ModelError otherwise). They are moved into the flat buffer
  // at once.
  ZeroRedundancyOptimizer(std::vector<at::Tensor> parameters, comm::Group& group, optim::OptimizerOptions options,
                          ZeroOptions zero = {});
  ~ZeroRedundancyOptimizer() override;

  // Steps this rank's range with the gradients in param.grad (the global-batch ones,
  // after DistributedDataParallel::finish), then all-gathers the parameters.
  torch::Tensor step(LossClosure closure = nullptr) override;

  // This rank's optimizer state only, as flat tensors over its range of the flat
  // parameter space ("zero.begin", "zero.end", "zero.total", and per kind of state one
  // tensor: SGD's "momentum_buffer"; Adam's "exp_avg", "exp_avg_sq" and "step"): a
  // checkpoint part per rank, independent of how many ranks there were.
  void save(torch::serialize::OutputArchive& archive) const override;
  // The state saved by one rank with this rank's range (same number of ranks, same
  // weights): load_resharded({&archive}).
  void load(torch::serialize::InputArchive& archive) override;
  // The state saved by every rank of a run with any number of ranks and weights (the
  // parts together must cover this rank's range; CheckpointError otherwise): this rank
  // takes the part of each that falls in its range. For resuming with another size.
  void load_resharded(const std::vector<torch::serialize::InputArchive*>& parts);

  // ZeRO stage 2: makes `ddp` (over the same group and the same parameters, in the same
  // order: ConfigError / ModelError otherwise) keep only this rank's range of the
  // reduced gradients (DistributedDataParallel::shard_gradients), and steps from that.
  // Call on every rank, before the first backward.
  void shard_gradients(DistributedDataParallel& ddp);
  bool gradients_sharded() const { return grad_shard_.defined(); }
  // Stage 2: this rank's range of the reduced gradients (valid after ddp.finish()).
  const at::Tensor& gradient_shard() const { return grad_shard_; }

  // Elements of the flat parameter space per rank, and this rank's [begin, end).
  const std::vector<int64_t>& counts() const { return counts_; }
  int64_t range_begin() const { return begin_; }
  int64_t range_end() const { return end_; }
  // Bytes of optimizer state this rank holds now (momentum, Adam's moments; 0 before
  // the first step).
  int64_t state_bytes() const;
  // The optimizer over this rank's range.
  torch::optim::Optimizer& local_optimizer() { return *local_; }

 private:
  comm::Group& group_;
  at::Tensor flat_;                 // every parameter, end to end; parameters are views of it
  std::vector<at::Tensor> params_;  // the model's parameters, in flat order
  std::vector<int64_t> offsets_;    // each parameter's first element in flat_
  std::vector<int64_t> counts_;
  int64_t begin_ = 0, end_ = 0;
  // This rank's pieces: parameter k's elements [piece_lo, piece_hi) (flattened), as views
  // of flat_ that local_ steps; their gradients are set from the parameters' each step.
  struct Piece {
    size_t param;
    int64_t lo, hi;
    at::Tensor view;
  };
  std::vector<Piece> pieces_;
  std::unique_ptr<torch::optim::Optimizer> local_;
  at::Tensor grad_shard_;  // stage 2: the reduced gradients of [begin_, end_)
};

}  // namespace loom::dp
