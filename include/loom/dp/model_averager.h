// Model averaging ("local SGD", "split and merge"): ranks train their replicas
// independently and periodically replace them by the average of all replicas, weighted
// by the samples each rank trained on since the last average.
//
// With period 1 and plain SGD (no momentum), averaging after every local step equals
// gradient averaging: sum_r w_r (p - lr g_r) = p - lr sum_r w_r g_r.
//
// Only the module is averaged; optimizer state (momentum, Adam moments) stays local.
// Collective: all members call in the same order. Blocking, bounded by the group's
// timeout. Not thread-safe; the Group must outlive the averager.
#pragma once

#include <torch/nn/module.h>

#include <cstdint>

namespace loom::comm {
class Group;
}

namespace loom::dp {

struct ModelAveragerOptions {
  int64_t period = 1;  // local optimizer steps between averages (K >= 1)
};

class ModelAverager {
 public:
  explicit ModelAverager(comm::Group& group, ModelAveragerOptions options = {});

  // Call after every local optimizer step with the samples this rank trained on in that
  // step. Every `period`-th call averages, weighted by samples since the last average
  // (one tiny extra allreduce for the total), and returns true.
  bool step(torch::nn::Module& module, int64_t local_samples);

  // Collective: floating-point parameters and buffers <- sum over ranks of
  // weight_r * value_r (weights should sum to 1 over the group, e.g. each rank's
  // samples / all samples), in a few coalesced allreduces; other buffers (integer
  // counters) are copied from group rank 0.
  static void average(torch::nn::Module& module, comm::Group& group, double weight);

  int64_t steps() const { return steps_; }
  int64_t averages() const { return averages_; }

 private:
  comm::Group& group_;
  ModelAveragerOptions options_;
  int64_t steps_ = 0;
  int64_t averages_ = 0;
  int64_t samples_since_ = 0;
};

}  // namespace loom::dp
