#include "loom/ps/ps_strategy.h"

#include <torch/torch.h>

#include <filesystem>

#include "loom/comm/context.h"
#include "loom/comm/group.h"
#include "loom/core/error.h"
#include "loom/core/log.h"
#include "loom/train/bench_slowdown.h"
#include "loom/train/tracer.h"
#include "loom/train/train_config.h"

namespace loom::ps {

std::string server_store_key(int index) { return "loom/ps/server/" + std::to_string(index); }

void PsStrategy::setup(const train::StrategySetup& s) {
  LOOM_CHECK(s.context, ConfigError, "--strategy ps needs a process group among the workers");
  const train::TrainConfig& c = *s.config;
  model_ = s.model;
  context_ = s.context;
  tracer_ = s.tracer;
  consistency_ = parse_consistency(c.consistency);
  // Checked now, not at the end of the run: the servers write under their own
  // directory, so only the last part of --ps-save travels.
  if (!c.ps_save.empty()) save_name_ = split_save_prefix(c.ps_save).name;
  slowdown_ = train::bench_slowdown_for(c.bench_slowdown, context_->rank());

  std::vector<TensorSpec> specs;
  for (const auto& item : model_->named_parameters()) {
    specs.push_back({item.key(), item.value().sizes().vec(), 4});
    params_.push_back(item.value());
    grads_.push_back(torch::zeros_like(item.value()));
  }
  WorkerOptions o;
  o.worker_id = static_cast<uint32_t>(context_->rank());
  o.slice_bytes = static_cast<int64_t>(c.ps_slice_mb * (1 << 20));
  o.timeout = std::chrono::milliseconds(static_cast<int64_t>(c.timeout * 1000));
  o.van = VanOptions::from_environment();  // the job's CURVE key, if any
  o.van.timeout = o.timeout;
  o.van.insecure = c.insecure;
  o.van.limits = limits_for_slices(o.slice_bytes);  // as the servers' (server_process.cpp)
  for (int i = 0; i < c.servers; ++i) o.servers.push_back(context_->store_get(server_store_key(i)));
  worker_ = std::make_unique<Worker>(specs, o);
  if (context_->rank() == 0) {
    log::info("ps: {} ({} consistency{})", describe(worker_->plan()), c.consistency,
              consistency_ == Consistency::ssp ? fmt::format(", staleness {}", c.staleness) : "");
    worker_->init(params_);
  }
  context_->world().barrier().wait();  // every key exists before anyone pulls
  worker_->wait(worker_->pull(params_, 0));
}

train::DataSlot PsStrategy::data_slot() const { return {context_->rank(), context_->world_size(), true}; }

train::StepOutput PsStrategy::step(const data::Batch& batch, const train::StepInfo& info) {
  for (auto& p : params_) {
    if (p.grad().defined()) p.mutable_grad().zero_();
  }
  double loss_value = 0;
  double compute_s = 0;
  if (batch.size() > 0) {
    const int64_t start = train::Tracer::now_us();
    const at::Tensor loss = train::forward_backward(model_, batch, *tracer_);
    loss_value = loss.item<double>();
    compute_s = train::apply_bench_slowdown(slowdown_, (train::Tracer::now_us() - start) * 1e-6);
  }
  std::vector<at::Tensor> grads;
  for (size_t i = 0; i < params_.size(); ++i) {
    const at::Tensor& g = params_[i].grad();
    grads.push_back(g.defined() ? g.contiguous() : grads_[i]);
  }
  {
    auto span = tracer_->span("push+pull");
    const auto pushed = worker_->push(grads, batch.size() > 0 ? info.share : 0.0, info.step);
    const auto pulled = worker_->pull(params_, info.step + 1);
    worker_->wait(pushed);
    worker_->wait(pulled);
  }
  steps_ = info.step + 1;
  last_share_ = info.share;
  return {loss_value, batch.size(), compute_s};
}

double PsStrategy::sum_over_data_ranks(double value) {
  if (consistency_ != Consistency::sync) {
    // No collective among asynchronous workers (a straggler must not hold the others
    // back, and a dead worker must not stop them): this worker's own value, scaled by
    // its share to stand for the whole batch.
    return last_share_ > 0 ? value / last_share_ : value;
  }
  return train::sum_over(context_->world(), value);
}

std::vector<double> PsStrategy::gather_over_data_ranks(double value) {
  return train::gather_over(context_->world(), value);
}

torch::nn::Sequential PsStrategy::final_model() {
  // sync: every replica already holds the servers' values after its last pull. async /
  // ssp: rank 0 fetches what the servers hold now (clock 0 never waits).
  if (consistency_ != Consistency::sync && context_->rank() == 0) worker_->wait(worker_->pull(params_, 0));
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
  if (consistency_ == Consistency::sync) context_->world().barrier().wait();
  if (context_->rank() == 0 && !save_name_.empty()) worker_->save(save_name_);
  worker_->done();
}

}  // namespace loom::ps
