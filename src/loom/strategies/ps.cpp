#include "loom/strategies/ps.h"

#include <torch/torch.h>

#include <filesystem>

#include "loom/comm/context.h"
#include "loom/comm/group.h"
#include "loom/core/error.h"
#include "loom/core/log.h"
#include "loom/ps/job_layout.h"
#include "loom/strategies/step.h"
#include "loom/trace/tracer.h"

namespace loom::strategies {

void PsStrategy::setup(const StrategySetup& s) {
  LOOM_CHECK(s.context, ConfigError, "--strategy ps needs a process group among the workers");
  model_ = s.model;
  context_ = s.context;
  tracer_ = s.tracer;

  std::vector<ps::TensorSpec> specs;
  for (const auto& item : model_->named_parameters()) {
    specs.push_back({item.key(), item.value().sizes().vec(), 4});
    params_.push_back(item.value());
    grads_.push_back(torch::zeros_like(item.value()));
  }
  ps::WorkerOptions o;
  o.worker_id = static_cast<uint32_t>(context_->rank());
  o.slice_bytes = options_.slice_bytes;
  o.timeout = options_.timeout;
  o.van = options_.van;  // token and CURVE key; the worker derives timeouts and limits from the two above
  for (int i = 0; i < options_.servers; ++i) o.servers.push_back(context_->store_get(ps::server_store_key(i)));
  worker_ = std::make_unique<ps::Worker>(specs, o);
  if (context_->rank() == 0) {
    log::info("ps: {} ({} consistency{})", describe(worker_->plan()), ps::consistency_name(options_.consistency),
              options_.consistency == ps::Consistency::ssp ? fmt::format(", staleness {}", options_.staleness) : "");
    worker_->init(params_);
  }
  context_->world().barrier().wait();  // every key exists before anyone pulls
  worker_->wait(worker_->pull(params_, 0));
}

DataSlot PsStrategy::data_slot() const { return {context_->rank(), context_->world_size(), true}; }

StepOutput PsStrategy::step(const data::Batch& batch, const StepInfo& info) {
  for (auto& p : params_) {
    if (p.grad().defined()) p.mutable_grad().zero_();
  }
  Computed c;
  if (batch.size() > 0) c = compute_gradients(model_, batch, *tracer_, step_);
  std::vector<at::Tensor> grads;
  for (size_t i = 0; i < params_.size(); ++i) {
    const at::Tensor& g = params_[i].grad();
    grads.push_back(g.defined() ? g.contiguous() : grads_[i]);
  }
  {
    auto span = tracer_->span("push+pull");
    // One request and one reply per slice: the push is also the pull of the next step
    // (Worker::push_pull; bitwise what push then pull give).
    worker_->wait(worker_->push_pull(grads, params_, batch.size() > 0 ? info.share : 0.0, info.step));
  }
  last_share_ = info.share;
  return {c.loss, batch.size(), c.compute_s};
}

double PsStrategy::sum_over_data_ranks(double value) {
  if (options_.consistency != ps::Consistency::sync) {
    // No collective among asynchronous workers (a straggler must not hold the others
    // back, and a dead worker must not stop them): this worker's own value, scaled by
    // its share to stand for the whole batch.
    return last_share_ > 0 ? value / last_share_ : value;
  }
  return context_->world().allreduce_sum(value);
}

std::vector<double> PsStrategy::gather_over_data_ranks(double value) {
  return context_->world().allgather_values(value);
}

torch::nn::Sequential PsStrategy::final_model() {
  // sync: every replica already holds the servers' values after its last pull. async /
  // ssp: rank 0 fetches what the servers hold now (clock 0 never waits).
  if (options_.consistency != ps::Consistency::sync && context_->rank() == 0) {
    worker_->wait(worker_->pull(params_, 0));
  }
  return model_;
}

void PsStrategy::checkpoint_services(const std::string& step_dir) {
  // sync: worker 0 has pulled this step's result, and no later update can be applied
  // before it pushes again, so the servers save exactly the state after this step.
  // async / ssp: a snapshot of a moving state.
  // Each server writes <its --checkpoint-dir>/<this step directory's name>/ps.server<i>.
  if (context_->rank() == 0) worker_->checkpoint(std::filesystem::path(step_dir).filename().string());
}

void PsStrategy::finish() {
  if (!worker_) return;
  // sync: every worker has pushed its last step before the servers save. async / ssp:
  // workers finish independently (the servers count them out one by one).
  if (options_.consistency == ps::Consistency::sync) context_->world().barrier().wait();
  if (context_->rank() == 0 && !options_.save_name.empty()) worker_->save(options_.save_name);
  worker_->done();
}

}  // namespace loom::strategies
