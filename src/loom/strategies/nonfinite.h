// `--skip-nonfinite N`: a step whose gradients hold a NaN or an infinity is skipped (no
// optimizer step, so parameters and optimizer state stay as they were) instead of
// stopping the run; the Trainer stops with a named error after N such steps in a row.
// Every rank must skip the same steps, or replicas and stages would drift apart:
// strategies pass the group whose ranks hold different gradients (pipeline stages) as
// `agree`, and ranks whose gradients are already identical (after an allreduce) decide
// alike on their own.
#pragma once

namespace torch::optim {
class Optimizer;
}  // namespace torch::optim

namespace loom::comm {
class Group;
}  // namespace loom::comm

namespace loom::strategies {

// True when every defined gradient of the optimizer's parameters is finite (with ZeRO
// stage 2, of the rank's range of the gradients: pass the data-parallel group as `agree`).
bool gradients_finite(const torch::optim::Optimizer& optimizer);

// optimizer.step(), unless `skip_nonfinite` and a gradient is not finite on this rank or,
// with `agree`, on any member of that group (one collective: call it on every member).
// Returns true when the step was skipped. Without `skip_nonfinite`: always steps.
bool step_unless_nonfinite(torch::optim::Optimizer& optimizer, bool skip_nonfinite, comm::Group* agree = nullptr);

}  // namespace loom::strategies
