// Stage fusion: the whole model from its stages, for --save and evaluation.
//
// Every rank of a pipeline builds the same whole model (same structure); stage s trains
// the layers of its range (the stage's layers are those very modules, so the full
// model's entries for that range are always current on rank s). gather_stages() makes
// rank 0's whole model current: every other stage sends the parameters and buffers of
// its layers, and rank 0 copies them in. Keys and order are the single-process model's.
#pragma once

#include <torch/nn/modules/container/sequential.h>

#include <cstdint>
#include <vector>

namespace loom::comm {
class Group;
}

namespace loom::pipeline {

// A Sequential of layers [begin, end) of `full`, sharing their modules (not copies) and
// keeping their names ("3", "4", ...), so its parameter names are the whole model's.
torch::nn::Sequential stage_layers(const torch::nn::Sequential& full, int64_t begin, int64_t end);

// Collective over `group`, whose rank s holds stage s of `split`. Afterwards rank 0's
// `full` holds every stage's current parameters and buffers.
void gather_stages(torch::nn::Sequential& full, const std::vector<int64_t>& split, comm::Group& group);

}  // namespace loom::pipeline
