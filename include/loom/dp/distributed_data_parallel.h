// DistributedDataParallel: data parallelism for any torch::nn::Module, the C++
// counterpart of torch.nn.parallel.DistributedDataParallel.
//
//   loom::dp::DistributedDataParallel ddp(model.ptr(), ctx->world(), {});
//   for (...) {
//     optimizer.zero_grad();
//     ddp.set_weight(double(local_samples) / global_samples);   // default 1 / world size
//     auto loss = loss_fn(model->forward(local_x), local_y);     // mean over local samples
//     loss.backward();            // buckets are allreduced while backward runs
//     ddp.finish();               // waits; param.grad now holds the global-batch gradient
//     optimizer.step();
//   }
//
// Construction is collective: it checks that every rank has the same parameters and
// buffers (names, dtypes, shapes; ModelError naming the first difference otherwise) and
// then broadcasts them from group rank 0. Gradients: see reducer.h. Forward is the
// module's own (C++ modules have no common forward signature); call it directly.
// Each bucket is reduced by a communication hook (grad_compression.h): a plain allreduce by
// default, fp16 with DdpOptions::compression, or your own (register_comm_hook).
//
// Ownership: shares the module; the Group must outlive this object. Not copyable.
// Thread-safety: one training thread; hooks run inside its backward.
#pragma once

#include <c10/core/ScalarType.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "loom/dp/grad_compression.h"

namespace loom::comm {
class Group;
}
namespace loom::trace {
class Tracer;
}

namespace loom::dp {

// ---- Bucket plan ------------------------------------------------------------
// BucketPlan: which gradients travel together in one flat allreduce, and where.
//
// Parameters are taken in a given order (at construction: reverse registration order,
// the order in which backward usually produces their gradients; after the first step:
// the order they actually arrived) and packed greedily: a parameter joins the current
// bucket while the bucket stays within its cap (a single parameter larger than the cap
// gets a bucket of its own), and a change of dtype starts a new bucket. The first bucket
// has its own, smaller cap (PyTorch's first_bucket_mb) so that the first allreduce
// starts early in backward.
//
// A plain value type; pure function of its inputs, so every rank computes the same plan
// from the same order.
struct ParamInfo {
  std::string name;
  int64_t numel = 0;
  at::ScalarType dtype = at::kFloat;
};

struct BucketCaps {
  int64_t first_bucket_bytes = int64_t{1} << 20;
  int64_t bucket_bytes = int64_t{25} << 20;
};

struct Bucket {
  std::vector<size_t> params;    // indices into the parameter list, in buffer order
  std::vector<int64_t> offsets;  // element offset of each parameter in the flat buffer
  int64_t numel = 0;             // elements of gradients (without any trailer)
  at::ScalarType dtype = at::kFloat;
};

struct BucketPlan {
  std::vector<Bucket> buckets;
  std::vector<size_t> order;      // the parameter order the plan was built from
  std::vector<size_t> bucket_of;  // parameter index -> bucket index
  std::vector<size_t> slot_of;    // parameter index -> position within its bucket
};

// `order` must be a permutation of 0..params.size()-1 (else ConfigError).
BucketPlan plan_buckets(const std::vector<ParamInfo>& params, const std::vector<size_t>& order, const BucketCaps& caps);

// n-1, n-2, ..., 0.
std::vector<size_t> reverse_order(size_t n);

// "[7.bias] [7.weight 5.bias] ..." for logs and test messages.
std::string describe(const BucketPlan& plan, const std::vector<ParamInfo>& params);

// Caps in bytes from megabytes (MiB, as PyTorch's bucket_cap_mb); ConfigError unless > 0.
BucketCaps caps_from_mb(double first_bucket_mb, double bucket_cap_mb);

// ---- DistributedDataParallel ---------------------------------------------------

class Reducer;

struct DdpOptions {
  double bucket_cap_mb = 25;   // MiB per bucket
  double first_bucket_mb = 1;  // MiB for bucket 0 (the first to be reduced)
  // Parameters without a gradient in a step count as zero gradients. When false, a
  // missing gradient makes finish() throw a ModelError naming the parameters.
  bool find_unused_parameters = false;
  // Selects a built-in communication hook (grad_compression.h: none = hooks::allreduce(),
  // fp16 = hooks::fp16_compress()); bf16 is a ConfigError with Gloo (libtorch 1.13).
  Compression compression = Compression::none;
  trace::Tracer* tracer = nullptr;  // optional: "allreduce bucket N" spans
};

class DistributedDataParallel {
 public:
  DistributedDataParallel(std::shared_ptr<torch::nn::Module> module, comm::Group& group, DdpOptions options = {});
  template <typename M>
  DistributedDataParallel(const torch::nn::ModuleHolder<M>& module, comm::Group& group, DdpOptions options = {})
      : DistributedDataParallel(std::static_pointer_cast<torch::nn::Module>(module.ptr()), group, options) {}
  ~DistributedDataParallel();
  DistributedDataParallel(const DistributedDataParallel&) = delete;
  DistributedDataParallel& operator=(const DistributedDataParallel&) = delete;

  torch::nn::Module& module() { return *module_; }
  const std::shared_ptr<torch::nn::Module>& module_ptr() const { return module_; }
  comm::Group& group() { return group_; }
  const DdpOptions& options() const { return options_; }

  // This rank's share of the global batch (local_samples / global_samples) for the next
  // synchronised backward; finite and >= 0; stays until changed. Default 1 / world size.
  void set_weight(double share);
  double weight() const;

  // Gradient accumulation: while sync is off, backward does not communicate and
  // gradients accumulate in param.grad; the next synchronised backward + finish()
  // reduces the accumulated gradients.
  void set_sync(bool sync);
  bool sync() const;

  class NoSyncGuard {
   public:
    explicit NoSyncGuard(DistributedDataParallel& ddp);
    ~NoSyncGuard();
    NoSyncGuard(const NoSyncGuard&) = delete;
    NoSyncGuard& operator=(const NoSyncGuard&) = delete;

   private:
    DistributedDataParallel& ddp_;
    bool previous_;
  };
  // { auto guard = ddp.no_sync(); loss1.backward(); }  loss2.backward(); ddp.finish();
  NoSyncGuard no_sync() { return NoSyncGuard(*this); }

  // Replaces how each bucket is reduced (the contract is in grad_compression.h). Call it at
  // most once, on every rank, before the first synchronised backward, and only with
  // DdpOptions::compression left at none (compression selects a built-in hook);
  // otherwise ConfigError, as for an empty hook.
  void register_comm_hook(CommHook hook);

  // Collective, after every synchronised backward and before optimizer.step(): waits for
  // all buckets and writes the reduced gradients into param.grad. Bounded by the group's
  // timeout. ModelError (on every rank) for a parameter without a gradient when
  // find_unused_parameters is false. A no-op while sync is off.
  void finish();

  // ZeRO stage 2 (ZeroRedundancyOptimizer::shard_gradients calls this for you): from the
  // next synchronised backward on, each bucket is reduce-scattered as soon as it is
  // complete, and a member keeps only its own range of the summed gradients. The flat
  // gradient space is the trainable parameters (parameter_names()) in registration
  // order, end to end; `counts` gives each member's contiguous range of it, in group rank
  // order (summing to the parameters' elements; one dtype). Returns this member's range:
  // after each finish() it holds the global-batch gradients of [its begin, its end);
  // param.grad is left undefined (freed as soon as it is copied into its bucket), so the
  // gradient memory between steps is the range plus at most a few bucket buffers. Buckets
  // keep their initial plan (no rebuild). With compression or a registered hook, the
  // bucket is reduced in full by the hook and the member keeps its range. Call it on
  // every member, once, before the first synchronised backward (ConfigError otherwise).
  at::Tensor shard_gradients(const std::vector<int64_t>& counts);
  bool gradients_sharded() const;
  // Bytes of gradient memory this object holds between steps: its bucket buffers (which
  // are the param.grad tensors), or with shard_gradients the range and the bucket pool.
  int64_t gradient_bytes() const;

  // Collective: copies the module's buffers (e.g. BatchNorm statistics) from `root`.
  void broadcast_buffers(int root = 0);

  // Inspection: the current bucket plan (parameter indices refer to parameter_names()),
  // and whether it has been rebuilt from the observed gradient order (after the first
  // synchronised step).
  const BucketPlan& bucket_plan() const;
  bool buckets_rebuilt() const;
  const std::vector<std::string>& parameter_names() const { return names_; }
  std::string describe_buckets() const;

 private:
  std::shared_ptr<torch::nn::Module> module_;
  comm::Group& group_;
  DdpOptions options_;
  std::vector<std::string> names_;  // trainable parameters, registration order
  std::unique_ptr<Reducer> reducer_;
};

}  // namespace loom::dp
