#include "loom/dp/allreduce_strategy.h"

#include <torch/torch.h>

#include "loom/comm/context.h"
#include "loom/core/error.h"
#include "loom/core/log.h"
#include "loom/train/bench_slowdown.h"
#include "loom/train/nonfinite.h"
#include "loom/train/tracer.h"
#include "loom/train/train_config.h"

namespace loom::dp {

DdpOptions ddp_options(const train::TrainConfig& c, train::Tracer* tracer) {
  DdpOptions o;
  o.bucket_cap_mb = c.bucket_mb;
  o.first_bucket_mb = std::min(1.0, c.bucket_mb);
  o.find_unused_parameters = c.find_unused_parameters;
  o.compression = parse_compression(c.grad_compression);
  o.tracer = tracer;
  return o;
}

void AllreduceStrategy::setup(const train::StrategySetup& s) {
  LOOM_CHECK(s.context, ConfigError, "--strategy allreduce needs a process group");
  const train::TrainConfig& c = *s.config;
  model_ = s.model;
  context_ = s.context;
  tracer_ = s.tracer;
  comm::Group& world = context_->world();
  if (c.sync == "grads") {
    ddp_ = std::make_unique<DistributedDataParallel>(model_, world, ddp_options(c, tracer_));
    if (context_->rank() == 0) log::info("allreduce: {}", ddp_->describe_buckets());
  } else {
    LOOM_CHECK(c.grad_compression == "none", ConfigError, "--grad-compression applies to --sync grads");
    ModelAveragerOptions o;
    o.period = c.sync_every;
    sync_every_ = c.sync_every;
    averager_ = std::make_unique<ModelAverager>(world, o);
    ModelAverager::average(*model_, world, 1.0 / world.size());  // identical start on every rank
  }
  optimizer_ = train::make_optimizer(model_->parameters(), s.optimizer);
  skip_nonfinite_ = c.skip_nonfinite > 0;
  slowdown_ = train::bench_slowdown_for(c.bench_slowdown, context_->rank());
}

train::DataSlot AllreduceStrategy::data_slot() const { return {context_->rank(), context_->world_size(), true}; }

train::StepOutput AllreduceStrategy::step(const data::Batch& batch, const train::StepInfo& info) {
  optimizer_->zero_grad();
  if (ddp_) ddp_->set_weight(info.share);
  if (batch.size() == 0) {
    // A worker with weight 0 (--shard-weights ...,0,...) still joins every collective.
    if (ddp_) ddp_->finish();
    // The averaged gradients are every rank's: this rank skips exactly when the others do.
    const bool skipped = train::step_unless_nonfinite(*optimizer_, skip_nonfinite_);
    if (averager_) averager_->step(*model_, 0);
    return {0.0, 0, 0.0, skipped};
  }
  const int64_t compute_start = train::Tracer::now_us();
  const at::Tensor loss = train::forward_backward(model_, batch, *tracer_);
  double compute_s = (train::Tracer::now_us() - compute_start) * 1e-6;
  compute_s = train::apply_bench_slowdown(slowdown_, compute_s);
  if (ddp_) {
    auto span = tracer_->span("allreduce wait");
    ddp_->finish();
  }
  bool skipped = false;
  {
    // --sync grads: the gradients are the average, identical on every rank, so every
    // rank decides alike. --sync params: each replica skips its own local step.
    auto span = tracer_->span("optimizer");
    skipped = train::step_unless_nonfinite(*optimizer_, skip_nonfinite_);
  }
  if (averager_) {
    auto span = tracer_->span("model average");
    averager_->step(*model_, batch.size());
  }
  return {loss.item<double>(), batch.size(), compute_s, skipped};
}

std::vector<double> AllreduceStrategy::gather_over_data_ranks(double value) {
  return train::gather_over(context_->world(), value);
}

double AllreduceStrategy::sum_over_data_ranks(double value) { return train::sum_over(context_->world(), value); }

torch::nn::Sequential AllreduceStrategy::final_model() {
  // Local SGD: replicas drift between averages; give every caller one model. An
  // evaluation point is therefore also a synchronisation point (docs/allreduce.md).
  if (averager_ && averager_->steps() % sync_every_ != 0) {
    ModelAverager::average(*model_, context_->world(), 1.0 / context_->world_size());
  }
  return model_;
}

}  // namespace loom::dp
