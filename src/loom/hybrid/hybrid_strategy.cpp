#include "loom/hybrid/hybrid_strategy.h"

#include <torch/torch.h>

#include "loom/comm/context.h"
#include "loom/comm/group.h"
#include "loom/core/error.h"
#include "loom/core/log.h"
#include "loom/dp/allreduce_strategy.h"
#include "loom/pipeline/pipeline_strategy.h"
#include "loom/pipeline/stage_fusion.h"
#include "loom/pipeline/stage_split.h"
#include "loom/train/nonfinite.h"
#include "loom/train/tracer.h"
#include "loom/train/train_config.h"

namespace loom::hybrid {

void HybridStrategy::setup(const train::StrategySetup& s) {
  LOOM_CHECK(s.context, ConfigError, "--strategy hybrid needs a process group");
  const train::TrainConfig& c = *s.config;
  model_ = s.model;
  context_ = s.context;
  tracer_ = s.tracer;
  micro_batches_ = static_cast<int>(c.micro_batches);
  mesh_ = std::make_unique<Mesh>(*context_, MeshShape{static_cast<int>(c.dp), static_cast<int>(c.pp)});
  if (context_->rank() == 0) log::info("hybrid: {}", mesh_->describe());

  // One split for every replica: decided over the whole job.
  split_ = pipeline::choose_split(model_, c, s.sample_shape, mesh_->pp(), context_->world());
  const auto offsets = pipeline::stage_offsets(split_);
  layers_ = pipeline::stage_layers(model_, offsets[mesh_->stage()], offsets[mesh_->stage() + 1]);
  torch::nn::Sequential& layers = layers_;

  if (!layers->parameters().empty()) {
    ddp_ = std::make_unique<dp::DistributedDataParallel>(layers, mesh_->stage_group(), dp::ddp_options(c, tracer_));
  }
  pipeline::PipelineStageOptions o;
  o.schedule = pipeline::parse_schedule(c.schedule);
  o.tracer = tracer_;
  // Reduce once per step: during the backward of the last micro-batch.
  if (ddp_) o.before_backward = [this](int, bool last) { ddp_->set_sync(last); };
  stage_ = std::make_unique<pipeline::PipelineStage>(layers, mesh_->pipeline(), o);
  optimizer_ = train::make_optimizer(layers->parameters(), s.optimizer);
  skip_nonfinite_ = c.skip_nonfinite > 0;
  if (context_->rank() == 0) {
    log::info("hybrid: --schedule {}, {} micro-batch(es) per replica", pipeline::schedule_name(o.schedule),
              micro_batches_);
    if (micro_batches_ < mesh_->pp()) {
      log::warn("hybrid: --micro-batches {} < {} stages leaves bubbles: each stage idles about {:.0f}% of every step",
                micro_batches_, mesh_->pp(), 100 * pipeline::theoretical_bubble(mesh_->pp(), micro_batches_));
    }
  }
}

train::LocalState HybridStrategy::local_state() {
  return {layers_.ptr().get(), optimizer_.get(), false, fmt::format("{}", fmt::join(split_, ","))};
}

train::DataSlot HybridStrategy::data_slot() const { return {mesh_->replica(), mesh_->dp(), true}; }

train::StepOutput HybridStrategy::step(const data::Batch& batch, const train::StepInfo& info) {
  optimizer_->zero_grad();
  if (ddp_) ddp_->set_weight(info.share);
  const bool first = stage_->stage() == 0, last = stage_->stage() == stage_->stages() - 1;
  double loss = 0;
  double busy = 0;
  if (batch.size() > 0) {
    loss = stage_->run(batch.size(), first ? batch.inputs : at::Tensor(), last ? batch.targets : at::Tensor(),
                       micro_batches_);
    busy = stage_->last_step().busy_s;
    busy_s_ += busy;
    wait_s_ += stage_->last_step().wait_s;
  } else if (ddp_) {
    ddp_->set_sync(true);  // a replica with no samples (weight 0) still joins the reduction
  }
  if (ddp_) {
    auto span = tracer_->span("allreduce wait");
    ddp_->finish();
  }
  bool skipped = false;
  {
    // Stages hold other gradients (replicas of a stage the same, after the allreduce):
    // the whole mesh agrees, so all skip or none.
    auto span = tracer_->span("optimizer");
    skipped = train::step_unless_nonfinite(*optimizer_, skip_nonfinite_, &context_->world());
  }
  return {loss, batch.size(), busy, skipped};
}

double HybridStrategy::sum_over_data_ranks(double value) {
  std::vector<at::Tensor> t{torch::full({1}, value, torch::kDouble)};
  mesh_->stage_group().allreduce(t).wait();    // stage 0: the sum over replicas
  mesh_->pipeline().broadcast(t, 0).wait();     // everyone: stage 0's sum
  return t[0].item<double>();
}

std::vector<double> HybridStrategy::gather_over_data_ranks(double value) {
  std::vector<at::Tensor> out;
  for (int d = 0; d < mesh_->dp(); ++d) out.push_back(torch::zeros({1}, torch::kDouble));
  mesh_->stage_group().allgather(out, torch::full({1}, value, torch::kDouble)).wait();
  std::vector<at::Tensor> all{torch::cat(out)};
  mesh_->pipeline().broadcast(all, 0).wait();  // stage 0's view, for every stage
  std::vector<double> values;
  for (int d = 0; d < mesh_->dp(); ++d) values.push_back(all[0][d].item<double>());
  return values;
}

torch::nn::Sequential HybridStrategy::final_model() {
  // Replicas are identical after every synchronous step: replica 0's stages suffice.
  if (mesh_->replica() == 0) pipeline::gather_stages(model_, split_, mesh_->pipeline());
  return model_;
}

void HybridStrategy::finish() {
  log::info("hybrid replica {} stage {}: peak stashed activations {} bytes, compute {:.2f} s, waiting on "
            "neighbours {:.2f} s",
            mesh_->replica(), mesh_->stage(), stage_->peak_stash_bytes(), busy_s_, wait_s_);
}

}  // namespace loom::hybrid
