#include "loom/pipeline/layer_costs.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>

#include "loom/core/error.h"

namespace loom::pipeline {

std::vector<double> parameter_costs(const torch::nn::Sequential& model) {
  std::vector<double> costs;
  for (const auto& layer : model->children()) {
    double n = 0;
    for (const auto& p : layer->parameters()) n += static_cast<double>(p.numel());
    costs.push_back(n);
  }
  return costs;
}

namespace {
using Clock = std::chrono::steady_clock;
double seconds_now() { return std::chrono::duration<double>(Clock::now().time_since_epoch()).count(); }
}  // namespace

namespace {

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
  return v[v.size() / 2];
}

// Per layer, per timed run: forward and backward seconds; and each layer's output bytes.
struct Runs {
  std::vector<std::vector<double>> forward, backward;
  std::vector<int64_t> output_bytes;
};

Runs time_layers(torch::nn::Sequential& model, const at::Tensor& sample, int repeats) {
  LOOM_CHECK(repeats >= 1, ConfigError, "time_costs: repeats must be >= 1, got {}", repeats);
  LOOM_CHECK(sample.defined() && sample.dim() >= 1 && sample.size(0) >= 1, ConfigError,
             "time_costs: needs a sample batch with at least one row");
  // Leave the model as found: keep its gradients and buffers aside.
  std::vector<at::Tensor> grads, buffers, buffer_copies;
  for (auto& p : model->parameters()) grads.push_back(p.grad().defined() ? p.grad().clone() : at::Tensor());
  for (auto& b : model->buffers()) {
    buffers.push_back(b);
    buffer_copies.push_back(b.clone());
  }
  std::vector<torch::nn::AnyModule*> modules;
  for (auto& m : *model) modules.push_back(&m);
  const size_t n = modules.size();
  Runs out;
  out.forward.resize(n);
  out.backward.resize(n);
  out.output_bytes.assign(n, 0);
  for (int r = 0; r <= repeats; ++r) {  // run 0 warms up
    // One forward and one backward of the whole model, as a stage runs them, with a
    // timestamp at every layer boundary: in the forward after each layer, in the
    // backward when the gradient of each layer's input is ready (tensor hooks).
    std::vector<double> fwd(n), grad_ready(n + 1);
    at::Tensor x = sample.detach();  // like stage 0's input: no gradient of its own
    for (size_t i = 0; i < n; ++i) {
      const double t0 = seconds_now();
      x = modules[i]->forward(x);
      fwd[i] = seconds_now() - t0;
      out.output_bytes[i] = static_cast<int64_t>(x.numel()) * static_cast<int64_t>(x.element_size());
      if (x.requires_grad()) {
        x.register_hook([&grad_ready, i](const at::Tensor&) { grad_ready[i + 1] = seconds_now(); });
      }
    }
    // The last layer also pays for the loss, as the last stage does.
    const double t0 = seconds_now();
    at::Tensor loss = x.dim() == 2 && x.is_floating_point()
                          ? torch::nn::functional::cross_entropy(x, torch::zeros({x.size(0)}, torch::kLong))
                          : x.sum();
    if (!loss.requires_grad()) continue;  // nothing trainable: all costs stay at forward only
    loss.backward();
    const double end = seconds_now();
    fwd[n - 1] += grad_ready[n] - t0;
    if (r == 0) continue;
    for (size_t i = 0; i < n; ++i) {
      // Backward of layer i: from its output's gradient to its input's gradient, or to
      // the end of the pass when its input needs none. 0 when its output needs none.
      const double from = grad_ready[i + 1];
      const double until = grad_ready[i] > 0 ? grad_ready[i] : end;
      out.forward[i].push_back(fwd[i]);
      out.backward[i].push_back(from > 0 ? std::max(0.0, until - from) : 0.0);
    }
  }
  {
    torch::NoGradGuard no_grad;
    size_t i = 0;
    for (auto& p : model->parameters()) {
      p.mutable_grad() = grads[i++];
    }
    for (size_t b = 0; b < buffers.size(); ++b) buffers[b].copy_(buffer_copies[b]);
  }
  return out;
}

}  // namespace

std::vector<double> time_costs(torch::nn::Sequential& model, const at::Tensor& sample, int repeats) {
  const Runs runs = time_layers(model, sample, repeats);
  std::vector<double> costs;
  for (size_t i = 0; i < runs.forward.size(); ++i) {
    std::vector<double> total;
    for (size_t r = 0; r < runs.forward[i].size(); ++r) total.push_back(runs.forward[i][r] + runs.backward[i][r]);
    costs.push_back(median(total));
  }
  return costs;
}

std::vector<LayerProfile> profile_layers(torch::nn::Sequential& model, const at::Tensor& sample, int repeats) {
  const Runs runs = time_layers(model, sample, repeats);
  const auto children = model->children();
  std::vector<LayerProfile> out(runs.forward.size());
  for (size_t i = 0; i < out.size(); ++i) {
    out[i].forward_s = median(runs.forward[i]);
    out[i].backward_s = median(runs.backward[i]);
    out[i].output_bytes = runs.output_bytes[i];
    for (const auto& p : children[i]->parameters()) {
      out[i].param_count += p.numel();
      out[i].param_bytes += static_cast<int64_t>(p.numel()) * static_cast<int64_t>(p.element_size());
    }
  }
  return out;
}

}  // namespace loom::pipeline
