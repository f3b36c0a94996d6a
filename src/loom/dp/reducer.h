// Reducer: the gradient engine under DistributedDataParallel. It hooks every trainable
// parameter's gradient accumulator, packs gradients into flat buckets as backward
// produces them and allreduces each bucket asynchronously as soon as it is complete.
//
// Note [bucket launch order]
// Bucket i is launched only after buckets 0..i-1 have been launched, on every rank, so
// every rank issues the same allreduces in the same order whatever order its gradients
// arrive in. finish() marks the gradients that never arrived (unused parameters) as
// ready, with zeros or the gradient already in param.grad, so the remaining buckets are
// launched in that same order; nothing is ever skipped. A trailer at the end of the last
// bucket carries one count per parameter ("this rank produced its gradient"), so after
// the last allreduce every rank knows, without another collective, whether any rank
// missed a gradient, and all ranks throw the same ModelError together instead of some
// of them waiting for a collective that never comes.
//
// Note [bucket rebuild]
// Buckets start in reverse registration order. At the end of the first synchronised
// step, rank 0 broadcasts the order in which its gradients actually arrived and every
// rank rebuilds its plan from that order (one broadcast, once), so the plans stay
// identical across ranks.
//
// Note [gradients as bucket views]
// After a parameter's first synchronised gradient, param.grad aliases its slice of the
// bucket (a plain tensor over the bucket's storage, not an autograd view), so autograd
// accumulates straight into the bucket and the reduced result is read in place: no copy
// into the bucket before the allreduce and none back after it. A param.grad the user
// replaces (or one that was undefined) is copied in once and aliased again. Optimizer
// zero_grad() zeroes the slice in place, as it should.
//
// Weighting: each rank's gradients are scaled in place by its weight (its share of the
// global batch) when complete, and buckets are SUM-reduced by the communication hook
// (grad_compression.h: hooks::allreduce() unless another is set), which the reducer calls
// once per bucket, in launch order, under its mutex.
//
// Note [sharded gradients] (ZeRO stage 2, shard()): the buckets are planned once, in
// reverse registration order, and never rebuilt, and each lays its parameters out in
// registration order, so bucket b holds one contiguous range [lo, hi) of the flat
// gradient space (gradient_shards.h). A gradient is copied into its bucket (scaled by the
// weight) when ready and param.grad is freed at once (a bucket of one parameter is its
// gradient itself, reduced in place); a complete bucket is
// reduce-scattered (or, with another communication hook, reduced by it in full) and this
// rank's part is kept in the shard, after which the bucket's buffer goes back to a pool.
// At most two buckets are in flight: a third waits for the oldest before it takes
// memory, so a step holds the shard plus a bounded amount of gradient memory. The trailer
// travels in its own small allreduce next to the last bucket.
//
// Thread-safety: hooks run on the autograd thread; set_weight/set_sync/finish may be
// called from the training thread between backward passes. State is guarded by one
// mutex. Ownership: holds the parameters' gradient accumulators (so the hooks stay
// installed) and removes its hooks on destruction; the Group must outlive it.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "loom/comm/work.h"
#include "loom/dp/distributed_data_parallel.h"
#include "loom/dp/grad_compression.h"

namespace torch::autograd {
struct Node;
}
namespace loom::comm {
class Group;
}
namespace loom::trace {
class Tracer;
}

namespace loom::dp {

class GradientShards;

struct ReducerOptions {
  BucketCaps caps;
  bool find_unused_parameters = false;
  CommHook hook;                    // empty: hooks::allreduce()
  trace::Tracer* tracer = nullptr;  // optional; spans "allreduce bucket N" on lane 1
};

class Reducer {
 public:
  // `params` are leaf tensors that require grad; `names` name them in errors.
  Reducer(std::vector<std::string> names, std::vector<at::Tensor> params, comm::Group& group, ReducerOptions options);
  ~Reducer();
  Reducer(const Reducer&) = delete;
  Reducer& operator=(const Reducer&) = delete;

  // This rank's weight for the next synchronised backward (finite, >= 0). A rank with
  // weight 0 contributes nothing and may call finish() without a backward.
  void set_weight(double weight);
  double weight() const;

  // When false, hooks do nothing and gradients accumulate locally in param.grad; the next
  // synchronised backward reduces the accumulated gradients.
  void set_sync(bool sync);
  bool sync() const;

  // Collective. Launches any bucket still waiting (see Note [bucket launch order]),
  // waits for all, writes the reduced gradients into param.grad. Throws ModelError (on
  // every rank) if some rank missed a gradient and find_unused_parameters is false, and
  // CommError / TimeoutError from the allreduces. A no-op while sync() is false.
  void finish();

  // Replaces the communication hook: ConfigError once a synchronised backward has
  // started, for an empty hook, or when one was set already.
  void set_comm_hook(CommHook hook);

  // ZeRO stage 2: see Note [sharded gradients]. `counts`: elements of the flat gradient
  // space per member, summing to the parameters' elements. Before the first synchronised
  // backward only, once (ConfigError otherwise). Returns the shard: after each finish(),
  // this member's range of the reduced gradients; param.grad is left undefined.
  at::Tensor shard(const std::vector<int64_t>& counts);
  bool sharded() const { return shards_ != nullptr; }
  // Bytes of gradient memory held between steps: the buckets (plain), or the shard and
  // the pooled bucket buffers (sharded).
  int64_t gradient_bytes() const;

  const BucketPlan& plan() const;
  const std::vector<ParamInfo>& params() const { return info_; }
  bool rebuilt() const;
  int64_t synced_steps() const;

 private:
  struct BucketState;
  class Hook;

  void on_grad_ready(size_t index);
  void mark_ready(size_t index, bool fired);
  at::Tensor grad_view(size_t index) const;   // param.grad's home in its bucket
  void launch_ready(bool finishing = false);  // finishing: from finish(), see Note [last bucket from finish]
  void launch(size_t bucket);
  void acquire_buffer(size_t bucket);  // sharded: a pool buffer for the bucket
  void keep_oldest();
  void fill_sharded(size_t index, size_t bucket,
                    at::Tensor& grad);  // sharded mark_ready                  // sharded: wait for the oldest bucket in
                                        // flight, keep its part
  void build(const std::vector<size_t>& order);
  void reset_step();
  void rebuild_from_rank0(const std::vector<size_t>& local_order);
  void attach_reduced_grads(const std::vector<int64_t>& counts);
  std::vector<int64_t> read_trailer();
  [[noreturn]] void throw_missing(const std::vector<int64_t>& counts);

  std::vector<std::string> names_;
  std::vector<at::Tensor> params_;
  std::vector<ParamInfo> info_;
  comm::Group& group_;
  ReducerOptions options_;

  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators_;
  std::vector<uintptr_t> hook_keys_;

  mutable std::mutex mutex_;
  double weight_;
  bool sync_ = true;
  bool rebuilt_ = false;
  bool started_ = false;      // a synchronised backward has run (the hook is fixed)
  bool custom_hook_ = false;  // set_comm_hook was called
  int64_t synced_steps_ = 0;
  BucketPlan plan_;
  std::vector<BucketState> buckets_;
  bool default_hook_ = true;                // no hook given: allreduce, or reduce-scatter when sharded
  std::unique_ptr<GradientShards> shards_;  // ZeRO stage 2; null otherwise
  at::Tensor trailer_;                      // sharded: the trailer's own buffer
  comm::Work trailer_work_;
  std::deque<size_t> in_flight_;  // sharded: launched buckets whose part is not yet kept

  // Per step.
  std::vector<uint8_t> ready_, fired_, contributed_;
  std::vector<size_t> arrival_;
  size_t next_launch_ = 0;
  std::exception_ptr error_;
};

}  // namespace loom::dp
