#include "loom/strategies/allreduce.h"

#include <torch/torch.h>

#include <fmt/ranges.h>

#include "loom/comm/context.h"
#include "loom/comm/group.h"
#include "loom/core/error.h"
#include "loom/core/log.h"
#include "loom/dp/zero_optimizer.h"
#include "loom/strategies/step.h"
#include "loom/trace/tracer.h"

namespace loom::strategies {

void AllreduceStrategy::setup(const StrategySetup& s) {
  LOOM_CHECK(s.context, ConfigError, "--strategy allreduce needs a process group");
  model_ = s.model;
  context_ = s.context;
  tracer_ = s.tracer;
  comm::Group& world = context_->world();
  if (options_.sync == SyncMode::grads) {
    dp::DdpOptions o = options_.ddp;
    o.tracer = tracer_;
    ddp_ = std::make_unique<dp::DistributedDataParallel>(model_, world, o);
    if (context_->rank() == 0) log::info("allreduce: {}", ddp_->describe_buckets());
  } else {
    LOOM_CHECK(options_.ddp.compression == dp::Compression::none, ConfigError,
               "--grad-compression applies to --sync grads");
    dp::ModelAveragerOptions o;
    o.period = options_.sync_every;
    averager_ = std::make_unique<dp::ModelAverager>(world, o);
    dp::ModelAverager::average(*model_, world, 1.0 / world.size());  // identical start on every rank
  }
  if (options_.zero >= 1) {
    dp::ZeroOptions zo;
    zo.shard_weights = options_.zero_shard_weights;
    auto zero = std::make_unique<dp::ZeroRedundancyOptimizer>(model_->parameters(), world, s.optimizer, zo);
    if (options_.zero >= 2) zero->shard_gradients(*ddp_);  // --zero needs --sync grads: ddp_ exists
    if (context_->rank() == 0) {
      log::info("allreduce --zero {}: optimizer state{} sharded, parameters per rank {}", options_.zero,
                options_.zero >= 2 ? " and gradients" : "", fmt::join(zero->counts(), ","));
    }
    optimizer_ = std::move(zero);
  } else {
    optimizer_ = optim::make_optimizer(model_->parameters(), s.optimizer);
  }
}

DataSlot AllreduceStrategy::data_slot() const { return {context_->rank(), context_->world_size(), true}; }

StepOutput AllreduceStrategy::step(const data::Batch& batch, const StepInfo& info) {
  optimizer_->zero_grad();
  if (ddp_) ddp_->set_weight(info.share);
  Computed c;
  // A worker with no samples (weight 0: --shard-weights ...,0,...) still joins every
  // collective, with no gradients.
  if (batch.size() > 0) c = compute_gradients(model_, batch, *tracer_, step_);
  if (ddp_) {
    auto span = tracer_->span("allreduce wait");
    ddp_->finish();
  }
  // grads: the averaged gradients are every rank's, so every rank decides alike.
  // params: each replica skips its own local step.
  // --zero 2: each rank holds its own range of the gradients, so they agree.
  const bool skipped = optimizer_step(*optimizer_, step_, *tracer_, options_.zero >= 2 ? &context_->world() : nullptr);
  if (averager_) {
    auto span = tracer_->span("model average");
    averager_->step(*model_, batch.size());
  }
  return {c.loss, batch.size(), c.compute_s, skipped};
}

Strategy::StateBytes AllreduceStrategy::state_bytes() {
  const auto* zero = dynamic_cast<const dp::ZeroRedundancyOptimizer*>(optimizer_.get());
  const int64_t grads = ddp_ && ddp_->gradients_sharded() ? ddp_->gradient_bytes() : gradient_bytes(*model_);
  return {zero ? zero->state_bytes() : optim::state_bytes(*optimizer_), grads};
}

std::vector<double> AllreduceStrategy::gather_over_data_ranks(double value) {
  return context_->world().allgather_values(value);
}

double AllreduceStrategy::sum_over_data_ranks(double value) { return context_->world().allreduce_sum(value); }

torch::nn::Sequential AllreduceStrategy::final_model() {
  // Local SGD: replicas drift between averages; give every caller one model. An
  // evaluation point is therefore also a synchronisation point (docs/allreduce.md).
  if (averager_ && averager_->steps() % options_.sync_every != 0) {
    dp::ModelAverager::average(*model_, context_->world(), 1.0 / context_->world_size());
  }
  return model_;
}

}  // namespace loom::strategies
