// The pieces of one training step that every strategy shares, so that each strategy
// writes only what is its own (how gradients travel, where the optimizer runs):
//
//   optimizer.zero_grad();                                   // or the strategy's own
//   const Computed c = compute_gradients(model, batch, tracer, step_options);
//   ... reduce / push the gradients ...
//   const bool skipped = optimizer_step(optimizer, step_options, tracer);
//
// compute_gradients() runs forward, the training loss and backward (spans "forward" and
// "backward"), and times them; with a --bench-slowdown factor it then sleeps so the
// rank looks that much slower. optimizer_step() is the span "optimizer" around
// step_unless_nonfinite() (nonfinite.h).
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/modules/container/sequential.h>

#include "loom/data/dataset.h"
#include "loom/strategies/options.h"

namespace torch::optim {
class Optimizer;
}
namespace loom::comm {
class Group;
}
namespace loom::trace {
class Tracer;
}

namespace loom::strategies {

// Forward, loss and backward on `batch` (gradients accumulate into the model), traced as
// "forward" and "backward" spans. Returns the loss.
at::Tensor forward_backward(torch::nn::Sequential& model, const data::Batch& batch, trace::Tracer& tracer,
                            models::LossKind loss = models::LossKind::cross_entropy);

struct Computed {
  double loss = 0;       // mean loss over the batch
  double compute_s = 0;  // forward + backward, stretched by the slowdown factor
};
// forward_backward(), timed; then the benchmark slowdown, if any.
Computed compute_gradients(torch::nn::Sequential& model, const data::Batch& batch, trace::Tracer& tracer,
                           const StepOptions& options);

// optimizer.step() in the span "optimizer", unless options.skip_nonfinite and a gradient
// is not finite here or (with `agree`, collective) on any member of that group. Returns
// true when the step was skipped.
// Bytes of the gradients the model's parameters hold now.
int64_t gradient_bytes(torch::nn::Module& model);

bool optimizer_step(torch::optim::Optimizer& optimizer, const StepOptions& options, trace::Tracer& tracer,
                    comm::Group* agree = nullptr);

}  // namespace loom::strategies
