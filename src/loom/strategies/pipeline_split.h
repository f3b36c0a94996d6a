// The stage split of a pipeline or hybrid job: --split, else --balance
// uniform | params | time (pipeline/stage_split.h, pipeline/layer_costs.h).
#pragma once

#include <torch/nn/modules/container/sequential.h>

#include <cstdint>
#include <vector>

#include "loom/strategies/options.h"

namespace loom::comm {
class Group;
}

namespace loom::strategies {

// The layers per stage of `model` cut into `stages` stages. Collective over `group`
// (every rank of the job, so all pipelines agree) for Balance::time: group rank 0
// profiles one micro-batch of `options.profile_rows` rows of `sample_shape`, everyone
// receives its split. Logs the split and the stage costs on group rank 0.
std::vector<int64_t> choose_split(torch::nn::Sequential& model, const SplitOptions& options,
                                  const std::vector<int64_t>& sample_shape, int stages, comm::Group& group);

}  // namespace loom::strategies
