#include "loom/strategies/pipeline_split.h"

#include <torch/torch.h>

#include "loom/comm/group.h"
#include "loom/core/log.h"
#include "loom/pipeline/layer_costs.h"
#include "loom/pipeline/stage_split.h"

namespace loom::strategies {

std::vector<int64_t> choose_split(torch::nn::Sequential& model, const SplitOptions& o,
                                  const std::vector<int64_t>& sample_shape, int stages, comm::Group& group) {
  const int64_t layers = static_cast<int64_t>(model->size());
  const bool leader = group.rank() == 0;
  std::vector<int64_t> split;
  std::vector<double> costs = pipeline::parameter_costs(model);
  std::string unit = " params";
  std::string how;
  if (!o.split.empty()) {
    split = pipeline::parse_split(o.split, layers, stages);
    how = "--split";
  } else {
    how = "--balance " + pipeline::balance_name(o.balance);
    if (o.balance == pipeline::Balance::uniform) {
      split = pipeline::uniform_split(layers, stages);
    } else if (o.balance == pipeline::Balance::params) {
      split = pipeline::balanced_split(costs, stages);
    } else {
      // Timings differ between processes: rank 0 decides, everyone follows.
      std::vector<at::Tensor> t{torch::zeros({stages}, torch::kInt64)};
      if (leader) {
        std::vector<int64_t> shape{std::max<int64_t>(1, o.profile_rows)};
        shape.insert(shape.end(), sample_shape.begin(), sample_shape.end());
        costs = pipeline::time_costs(model, torch::ones(shape));
        for (double& x : costs) x *= 1e3;
        unit = " ms";
        split = pipeline::balanced_split(costs, stages);
        for (int s = 0; s < stages; ++s) t[0][s] = split[s];
      }
      if (group.size() > 1) group.broadcast(t, 0).wait();
      split.clear();
      for (int s = 0; s < stages; ++s) split.push_back(t[0][s].item<int64_t>());
    }
  }
  if (leader) log::info("pipeline: {} stage(s) by {}: {}", stages, how, pipeline::describe_split(split, costs, unit));
  return split;
}

}  // namespace loom::strategies
