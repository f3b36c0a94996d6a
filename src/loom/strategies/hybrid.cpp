#include "loom/strategies/hybrid.h"

#include <torch/torch.h>

#include <numeric>

#include "loom/comm/context.h"
#include "loom/comm/group.h"
#include "loom/core/error.h"
#include "loom/core/log.h"
#include "loom/dp/zero_optimizer.h"
#include "loom/pipeline/pipeline_stage.h"
#include "loom/pipeline/stage_split.h"
#include "loom/strategies/pipeline_split.h"
#include "loom/strategies/step.h"
#include "loom/trace/tracer.h"

namespace loom::strategies {

void HybridStrategy::setup(const StrategySetup& s) {
  LOOM_CHECK(s.context, ConfigError, "--strategy {} needs a process group", name());
  model_ = s.model;
  context_ = s.context;
  tracer_ = s.tracer;
  const int pp = options_.pp == 0 ? context_->world_size() : options_.pp;
  mesh_ = std::make_unique<hybrid::Mesh>(*context_, hybrid::MeshShape{options_.dp, pp});
  const bool leader = context_->rank() == 0;
  if (leader && options_.pp != 0) log::info("hybrid: {}", mesh_->describe());

  // One split for every replica: decided over the whole job.
  split_ = choose_split(model_, options_.split, s.sample_shape, pp, context_->world());
  const auto offsets = pipeline::stage_offsets(split_);
  layers_ = pipeline::stage_layers(model_, offsets[mesh_->stage()], offsets[mesh_->stage() + 1]);
  torch::nn::Sequential& layers = layers_;

  if (mesh_->dp() > 1 && !layers->parameters().empty()) {
    dp::DdpOptions o = options_.ddp;
    o.tracer = tracer_;
    ddp_ = std::make_unique<dp::DistributedDataParallel>(layers, mesh_->stage_group(), o);
  }
  pipeline::PipelineStageOptions o;
  o.schedule = options_.schedule;
  o.loss = [kind = step_.loss](const at::Tensor& out, const at::Tensor& targets) {
    return models::training_loss(kind, out, targets);
  };
  o.tracer = tracer_;
  // Reduce once per step: during the backward of the last micro-batch.
  if (ddp_) o.before_backward = [this](int, bool last) { ddp_->set_sync(last); };
  stage_ = std::make_unique<pipeline::PipelineStage>(layers, mesh_->pipeline(), o);
  if (ddp_ && options_.zero >= 1) {
    // Each replica of this stage keeps optimizer state for its range of the stage's
    // parameters; the step's all-gather runs over the stage's replicas.
    dp::ZeroOptions zo;
    zo.shard_weights = options_.zero_shard_weights;
    auto zero =
        std::make_unique<dp::ZeroRedundancyOptimizer>(layers->parameters(), mesh_->stage_group(), s.optimizer, zo);
    if (options_.zero >= 2) zero->shard_gradients(*ddp_);
    const auto& counts = zero->counts();
    log::info("hybrid --zero {}: stage {} replica {} keeps optimizer state{} for parameters [{}, {}) of the stage's {}",
              options_.zero, mesh_->stage(), mesh_->replica(), options_.zero >= 2 ? " and gradients" : "",
              zero->range_begin(), zero->range_end(), std::accumulate(counts.begin(), counts.end(), int64_t{0}));
    optimizer_ = std::move(zero);
  } else {
    optimizer_ = optim::make_optimizer(layers->parameters(), s.optimizer);
  }
  if (leader) {
    const int m = options_.micro_batches;
    log::info("{}: --schedule {}, {} micro-batch(es) per pipeline", name(), pipeline::schedule_name(o.schedule), m);
    if (m < pp) {
      log::warn(
          "{}: --micro-batches {} < {} stages leaves bubbles: each stage idles about {:.0f}% of every step; "
          "use --micro-batches >= {}",
          name(), m, pp, 100 * pipeline::theoretical_bubble(pp, m), 4 * pp);
    }
  }
}

LocalState HybridStrategy::local_state() {
  return {layers_.ptr().get(), optimizer_.get(), false, fmt::format("{}", fmt::join(split_, ","))};
}

DataSlot HybridStrategy::data_slot() const { return {mesh_->replica(), mesh_->dp(), true}; }

StepOutput HybridStrategy::step(const data::Batch& batch, const StepInfo& info) {
  optimizer_->zero_grad();
  if (ddp_) ddp_->set_weight(info.share);
  const bool first = stage_->stage() == 0, last = stage_->stage() == stage_->stages() - 1;
  double loss = 0;
  double busy = 0;
  if (batch.size() > 0) {
    loss = stage_->run(batch.size(), first ? batch.inputs : at::Tensor(), last ? batch.targets : at::Tensor(),
                       options_.micro_batches);
    const pipeline::StageStepStats& st = stage_->last_step();
    busy = st.busy_s;
    busy_s_ += st.busy_s;
    wait_s_ += st.wait_s;
    peak_in_flight_ = std::max(peak_in_flight_, st.peak_in_flight);
  } else if (ddp_) {
    ddp_->set_sync(true);  // a replica with no samples (weight 0) still joins the reduction
  }
  if (ddp_) {
    auto span = tracer_->span("allreduce wait");
    ddp_->finish();
  }
  // Stages hold other gradients (replicas of a stage the same, after the allreduce): the
  // whole mesh agrees, so all skip or none.
  const bool skipped = optimizer_step(*optimizer_, step_, *tracer_, &context_->world());
  return {loss, batch.size(), busy, skipped};
}

double HybridStrategy::sum_over_data_ranks(double value) {
  const double over_replicas = mesh_->stage_group().allreduce_sum(value);  // stage 0: the sum over replicas
  return mesh_->pipeline().broadcast_value(over_replicas, 0);              // everyone: stage 0's sum
}

std::vector<double> HybridStrategy::gather_over_data_ranks(double value) {
  // Stage 0's view, for every stage, in one broadcast.
  return mesh_->pipeline().broadcast_values(mesh_->stage_group().allgather_values(value), 0);
}

torch::nn::Sequential HybridStrategy::final_model() {
  // Replicas are identical after every synchronous step: replica 0's stages suffice.
  if (mesh_->replica() == 0) pipeline::gather_stages(model_, split_, mesh_->pipeline());
  return model_;
}

void HybridStrategy::finish() {
  const std::string who = options_.pp == 0
                              ? fmt::format("pipeline stage {}", mesh_->stage())
                              : fmt::format("hybrid replica {} stage {}", mesh_->replica(), mesh_->stage());
  log::info(
      "{}: peak stashed activations {} bytes ({} micro-batch(es) in flight), compute {:.2f} s, waiting on "
      "neighbours {:.2f} s",
      who, stage_->peak_stash_bytes(), peak_in_flight_, busy_s_, wait_s_);
}

}  // namespace loom::strategies
