#include "loom/strategies/step.h"

#include <torch/torch.h>

#include "loom/models/registry.h"
#include "loom/strategies/bench_slowdown.h"
#include "loom/strategies/nonfinite.h"
#include "loom/trace/tracer.h"

namespace loom::strategies {

at::Tensor forward_backward(torch::nn::Sequential& model, const data::Batch& batch, trace::Tracer& tracer,
                            models::LossKind kind) {
  at::Tensor loss;
  {
    auto span = tracer.span("forward");
    loss = models::training_loss(kind, model->forward(batch.inputs), batch.targets);
  }
  {
    auto span = tracer.span("backward");
    loss.backward();
  }
  return loss;
}

Computed compute_gradients(torch::nn::Sequential& model, const data::Batch& batch, trace::Tracer& tracer,
                           const StepOptions& options) {
  const int64_t start = trace::Tracer::now_us();
  const at::Tensor loss = forward_backward(model, batch, tracer, options.loss);
  const double compute_s = (trace::Tracer::now_us() - start) * 1e-6;
  return {loss.item<double>(), apply_bench_slowdown(options.slowdown, compute_s)};
}

int64_t gradient_bytes(torch::nn::Module& model) {
  int64_t bytes = 0;
  for (const auto& p : model.parameters()) {
    if (p.grad().defined()) bytes += static_cast<int64_t>(p.grad().nbytes());
  }
  return bytes;
}

bool optimizer_step(torch::optim::Optimizer& optimizer, const StepOptions& options, trace::Tracer& tracer,
                    comm::Group* agree) {
  auto span = tracer.span("optimizer");
  return step_unless_nonfinite(optimizer, options.skip_nonfinite, agree);
}

}  // namespace loom::strategies
