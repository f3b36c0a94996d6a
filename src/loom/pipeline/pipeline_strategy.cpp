#include "loom/pipeline/pipeline_strategy.h"

#include <torch/torch.h>

#include "loom/comm/context.h"
#include "loom/core/error.h"
#include "loom/core/log.h"
#include "loom/pipeline/layer_costs.h"
#include "loom/pipeline/stage_fusion.h"
#include "loom/pipeline/stage_split.h"
#include "loom/train/nonfinite.h"
#include "loom/train/tracer.h"
#include "loom/train/train_config.h"

namespace loom::pipeline {

std::vector<int64_t> choose_split(torch::nn::Sequential& model, const train::TrainConfig& c,
                                  const std::vector<int64_t>& sample_shape, int stages, comm::Group& group) {
  const int64_t layers = static_cast<int64_t>(model->size());
  const bool leader = group.rank() == 0;
  std::vector<int64_t> split;
  std::vector<double> costs = parameter_costs(model);
  std::string unit = " params";
  std::string how;
  if (!c.split.empty()) {
    split = parse_split(c.split, layers, stages);
    how = "--split";
  } else {
    const Balance balance = parse_balance(c.balance);
    how = "--balance " + balance_name(balance);
    if (balance == Balance::uniform) {
      split = uniform_split(layers, stages);
    } else if (balance == Balance::params) {
      split = balanced_split(costs, stages);
    } else {
      // Timings differ between processes: rank 0 decides, everyone follows.
      std::vector<at::Tensor> t{torch::zeros({stages}, torch::kInt64)};
      if (leader) {
        // One micro-batch of one pipeline (hybrid: of one of the --dp replicas).
        const int64_t replicas = c.strategy == "hybrid" ? c.dp : 1;
        const int64_t rows = std::max<int64_t>(1, c.batch_size / (replicas * c.micro_batches));
        std::vector<int64_t> shape{rows};
        shape.insert(shape.end(), sample_shape.begin(), sample_shape.end());
        costs = time_costs(model, torch::ones(shape));
        for (double& x : costs) x *= 1e3;
        unit = " ms";
        split = balanced_split(costs, stages);
        for (int s = 0; s < stages; ++s) t[0][s] = split[s];
      }
      if (group.size() > 1) group.broadcast(t, 0).wait();
      split.clear();
      for (int s = 0; s < stages; ++s) split.push_back(t[0][s].item<int64_t>());
    }
  }
  if (leader) log::info("pipeline: {} stage(s) by {}: {}", stages, how, describe_split(split, costs, unit));
  return split;
}

void PipelineStrategy::setup(const train::StrategySetup& s) {
  LOOM_CHECK(s.context, ConfigError, "--strategy pipeline needs a process group");
  const train::TrainConfig& c = *s.config;
  model_ = s.model;
  context_ = s.context;
  tracer_ = s.tracer;
  micro_batches_ = static_cast<int>(c.micro_batches);
  comm::Group& world = context_->world();
  split_ = choose_split(model_, c, s.sample_shape, world.size(), world);
  const int me = world.rank();
  int64_t begin = 0;
  for (int i = 0; i < me; ++i) begin += split_[i];
  layers_ = stage_layers(model_, begin, begin + split_[me]);
  torch::nn::Sequential& layers = layers_;
  const ScheduleKind schedule = parse_schedule(c.schedule);
  if (me == 0) {
    log::info("pipeline: --schedule {}, {} micro-batch(es) of ~{} samples", schedule_name(schedule), micro_batches_,
              (c.batch_size + micro_batches_ - 1) / micro_batches_);
    if (micro_batches_ < world.size()) {
      log::warn("pipeline: --micro-batches {} < {} stages leaves bubbles: each stage idles about {:.0f}% of every "
                "step; use --micro-batches >= {}",
                micro_batches_, world.size(), 100 * theoretical_bubble(world.size(), micro_batches_),
                4 * world.size());
    }
  }
  PipelineStageOptions o;
  o.schedule = schedule;
  o.tracer = tracer_;
  stage_ = std::make_unique<PipelineStage>(layers, world, o);
  optimizer_ = train::make_optimizer(layers->parameters(), s.optimizer);
  skip_nonfinite_ = c.skip_nonfinite > 0;
}

train::StepOutput PipelineStrategy::step(const data::Batch& batch, const train::StepInfo&) {
  optimizer_->zero_grad();
  const bool first = stage_->stage() == 0, last = stage_->stage() == stage_->stages() - 1;
  const double loss = stage_->run(batch.size(), first ? batch.inputs : at::Tensor(),
                                  last ? batch.targets : at::Tensor(), micro_batches_);
  bool skipped = false;
  {
    // Each stage holds other gradients: the stages agree, so all skip or none.
    auto span = tracer_->span("optimizer");
    skipped = train::step_unless_nonfinite(*optimizer_, skip_nonfinite_, &context_->world());
  }
  const StageStepStats& st = stage_->last_step();
  busy_s_ += st.busy_s;
  wait_s_ += st.wait_s;
  peak_in_flight_ = std::max(peak_in_flight_, st.peak_in_flight);
  return {loss, batch.size(), st.busy_s, skipped};
}

double PipelineStrategy::sum_over_data_ranks(double value) {
  std::vector<at::Tensor> t{torch::full({1}, value, torch::kDouble)};
  context_->world().broadcast(t, 0).wait();
  return t[0].item<double>();
}

torch::nn::Sequential PipelineStrategy::final_model() {
  gather_stages(model_, split_, context_->world());
  return model_;
}

train::LocalState PipelineStrategy::local_state() {
  return {layers_.ptr().get(), optimizer_.get(), false, fmt::format("{}", fmt::join(split_, ","))};
}

void PipelineStrategy::finish() {
  log::info("pipeline stage {}: peak stashed activations {} bytes ({} micro-batch(es) in flight), compute {:.2f} s, "
            "waiting on neighbours {:.2f} s",
            stage_->stage(), stage_->peak_stash_bytes(), peak_in_flight_, busy_s_, wait_s_);
}

}  // namespace loom::pipeline
