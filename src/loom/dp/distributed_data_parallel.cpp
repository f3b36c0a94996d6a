#include "loom/dp/distributed_data_parallel.h"

#include "loom/comm/group.h"
#include "loom/core/error.h"
#include "loom/dp/coalesced.h"
#include "loom/dp/model_consistency.h"
#include "loom/dp/reducer.h"

namespace loom::dp {

DistributedDataParallel::DistributedDataParallel(std::shared_ptr<torch::nn::Module> module, comm::Group& group,
                                                 DdpOptions options)
    : module_(std::move(module)), group_(group), options_(options) {
  LOOM_CHECK(module_ != nullptr, ConfigError, "DistributedDataParallel needs a module");
  ReducerOptions ro;
  ro.caps = caps_from_mb(options_.first_bucket_mb, options_.bucket_cap_mb);
  ro.find_unused_parameters = options_.find_unused_parameters;
  // ConfigError for bf16, before any collective. None: the reducer's default (allreduce,
  // or reduce-scatter once the gradients are sharded).
  if (options_.compression != Compression::none) ro.hook = hook_for(options_.compression);
  ro.tracer = options_.tracer;

  std::vector<NamedTensor> entries;
  std::vector<at::Tensor> state;
  std::vector<at::Tensor> trainable;
  // Undefined tensors (optional parameters / buffers a module left empty) are skipped.
  for (const auto& item : module_->named_parameters(/*recurse=*/true)) {
    if (!item.value().defined()) continue;
    entries.push_back({"parameter", item.key(), item.value()});
    state.push_back(item.value());
    if (item.value().requires_grad()) {
      names_.push_back(item.key());
      trainable.push_back(item.value());
    }
  }
  for (const auto& item : module_->named_buffers(/*recurse=*/true)) {
    if (!item.value().defined()) continue;
    entries.push_back({"buffer", item.key(), item.value()});
    state.push_back(item.value());
  }
  check_same_model(group_, entries);
  broadcast_coalesced(group_, state, /*root=*/0);
  reducer_ = std::make_unique<Reducer>(names_, std::move(trainable), group_, ro);
}

DistributedDataParallel::~DistributedDataParallel() = default;

void DistributedDataParallel::set_weight(double share) { reducer_->set_weight(share); }
double DistributedDataParallel::weight() const { return reducer_->weight(); }
void DistributedDataParallel::set_sync(bool sync) { reducer_->set_sync(sync); }
bool DistributedDataParallel::sync() const { return reducer_->sync(); }
void DistributedDataParallel::finish() { reducer_->finish(); }
at::Tensor DistributedDataParallel::shard_gradients(const std::vector<int64_t>& counts) {
  return reducer_->shard(counts);
}
bool DistributedDataParallel::gradients_sharded() const { return reducer_->sharded(); }
int64_t DistributedDataParallel::gradient_bytes() const { return reducer_->gradient_bytes(); }

void DistributedDataParallel::register_comm_hook(CommHook hook) {
  LOOM_CHECK(options_.compression == Compression::none, ConfigError,
             "register_comm_hook: DdpOptions::compression = {} selects a built-in hook already; leave it at none to "
             "register another",
             to_string(options_.compression));
  reducer_->set_comm_hook(std::move(hook));
}

DistributedDataParallel::NoSyncGuard::NoSyncGuard(DistributedDataParallel& ddp) : ddp_(ddp), previous_(ddp.sync()) {
  ddp_.set_sync(false);
}

DistributedDataParallel::NoSyncGuard::~NoSyncGuard() { ddp_.set_sync(previous_); }

void DistributedDataParallel::broadcast_buffers(int root) {
  std::vector<at::Tensor> buffers;
  for (const auto& b : module_->buffers(/*recurse=*/true)) {
    if (b.defined()) buffers.push_back(b);
  }
  if (!buffers.empty()) broadcast_coalesced(group_, buffers, root);
}

const BucketPlan& DistributedDataParallel::bucket_plan() const { return reducer_->plan(); }
bool DistributedDataParallel::buckets_rebuilt() const { return reducer_->rebuilt(); }
std::string DistributedDataParallel::describe_buckets() const { return describe(reducer_->plan(), reducer_->params()); }

}  // namespace loom::dp
