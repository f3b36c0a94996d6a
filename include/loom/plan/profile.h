// The planner's model profile (issue 18, docs/planner.md): per layer of a Sequential,
// forward and backward seconds at each batch size a plan may run it at, the bytes of its
// output (what a pipeline stage boundary sends) and of its parameters, measured on this
// machine with the threads the job would use. The timing is --balance time's
// (pipeline/layer_costs.h) on uniform [0, 1) inputs: one warm-up run, then the median of at least `repeats` runs
// (more for short steps: enough to fill about 0.15 s, at most 50 per layer profile and
// 100 whole steps); the model is left exactly as it was.
//
//   loom::plan::ProfileOptions o;
//   o.batches = loom::plan::batches_that_matter(64, 4);   // 64, 32, 22, 16, 8, 4, 2, 1
//   const auto profile = loom::plan::profile_model(model, "cnn", {1, 28, 28}, o);
//   std::ofstream("profile.json") << profile.to_json();
//
// Thread-safety: profile_model sets libtorch's intra-op thread count and OpenBLAS's pool
// for the process (as the trainer does: with OpenBLAS at its default, a one-thread
// profile used both cores and the CNN's step came out 1.5x faster than training's).
#pragma once

#include <torch/nn/modules/container/sequential.h>

#include <cstdint>
#include <string>
#include <vector>

#include "loom/optim/optimizer.h"

namespace loom::plan {

struct LayerTimes {
  int64_t batch = 0;
  double forward_s = 0;   // the last layer's includes the loss
  double backward_s = 0;  // its output's gradient to its input's
  int64_t output_bytes = 0;
};

struct LayerProfile {
  std::string name;  // the Sequential's child name ("0", "1", ...)
  int64_t param_count = 0;
  int64_t param_bytes = 0;
  std::vector<LayerTimes> times;  // one per profiled batch, in ProfileOptions::batches order
};

struct ModelProfile {
  std::string model;
  std::vector<int64_t> sample_shape;
  int threads = 1;
  int repeats = 0;
  std::vector<int64_t> batches;
  std::vector<LayerProfile> layers;
  // The whole training step of a plain single-process loop (zero_grad, forward, loss,
  // backward, optimizer step) at each batch, in `batches` order; empty when not measured
  // (a hand-written profile): then the layers' sum plus optimizer_s stands for it.
  std::vector<double> step_s;
  std::string optimizer = "sgd";
  double optimizer_s = 0;             // one optimizer step over every parameter
  int64_t optimizer_state_bytes = 0;  // the state it holds after a step (all parameters)
  // Parameter tensors of the model (weights and biases: what the reducer hooks one by
  // one); 0 when not known (a hand-written profile).
  int64_t param_tensors = 0;

  // Measured step of a real `loom train --strategy single` run at the largest batch over
  // the profile's own whole step there (1: not anchored). scale_times() has applied it to
  // every time above: the profile gives the shape (layers, batches), the run the level.
  double training_scale = 1;

  int64_t param_count() const;
  int64_t param_bytes() const;
  // Multiplies every time (layers, whole steps, optimizer) by `factor` and records it in
  // training_scale.
  void scale_times(double factor);
  // Layer i at any batch >= 1: the profiled batch itself, else linear between the two
  // profiled batches around it, else per sample from the nearest end (time and bytes
  // proportional to the batch beyond the profiled range).
  LayerTimes layer_at(size_t i, int64_t batch) const;
  // The whole step at any batch (interpolated the same way).
  double step_at(int64_t batch) const;

  // JSON object with the fields above; from_json names `source` in a DataError when the
  // text is not such an object.
  std::string to_json() const;
  static ModelProfile from_json(const std::string& text, const std::string& source);
};

struct ProfileOptions {
  std::vector<int64_t> batches;       // each >= 1 (ConfigError otherwise); empty: {1}
  int threads = 1;                    // libtorch intra-op threads while profiling (>= 1)
  int repeats = 5;                    // timed runs per batch at least (>= 1)
  optim::OptimizerOptions optimizer;  // the job's: timed in the whole step and alone
};

ModelProfile profile_model(torch::nn::Sequential& model, const std::string& name,
                           const std::vector<int64_t>& sample_shape, const ProfileOptions& options);

// The per-process batch sizes a plan for `global_batch` samples over up to `max_procs`
// processes can run: ceil(B / k) for k = 1 .. max_procs (a worker's share) and B / 2^j
// (pipeline micro-batches), distinct, largest first, down to 1.
std::vector<int64_t> batches_that_matter(int64_t global_batch, int max_procs);

}  // namespace loom::plan
