#include "loom/dp/model_averager.h"

#include <ATen/ATen.h>

#include <cmath>
#include <vector>

#include "loom/comm/group.h"
#include "loom/core/error.h"
#include "loom/dp/coalesced.h"

namespace loom::dp {

ModelAverager::ModelAverager(comm::Group& group, ModelAveragerOptions options) : group_(group), options_(options) {
  LOOM_CHECK(options_.period >= 1, ConfigError, "model averaging period must be >= 1, got {}", options_.period);
}

bool ModelAverager::step(torch::nn::Module& module, int64_t local_samples) {
  LOOM_CHECK(local_samples >= 0, ConfigError, "samples per step must be >= 0, got {}", local_samples);
  ++steps_;
  samples_since_ += local_samples;
  if (steps_ % options_.period != 0) return false;
  std::vector<at::Tensor> total{at::full({1}, static_cast<double>(samples_since_), at::kDouble)};
  group_.allreduce(total, comm::ReduceOp::sum).wait();
  const double all = total[0].item<double>();
  const double weight = all > 0 ? samples_since_ / all : 1.0 / group_.size();
  average(module, group_, weight);
  samples_since_ = 0;
  ++averages_;
  return true;
}

void ModelAverager::average(torch::nn::Module& module, comm::Group& group, double weight) {
  LOOM_CHECK(std::isfinite(weight) && weight >= 0, ConfigError,
             "model averaging weight must be finite and >= 0, got {}", weight);
  std::vector<at::Tensor> floating, other;
  auto sort = [&](const at::Tensor& t) {
    if (!t.defined()) return;
    (at::isFloatingType(t.scalar_type()) ? floating : other).push_back(t);
  };
  for (const auto& p : module.parameters(/*recurse=*/true)) sort(p);
  for (const auto& b : module.buffers(/*recurse=*/true)) sort(b);
  if (!floating.empty()) allreduce_coalesced(group, floating, weight);
  if (!other.empty()) broadcast_coalesced(group, other, /*root=*/0);
}

}  // namespace loom::dp
