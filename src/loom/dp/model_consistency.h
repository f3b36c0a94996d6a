// Checks that every rank holds the same model layout: the same parameters and buffers,
// by name, dtype and shape, in the same order.
//
// Collective, and cheap when the models agree: one allgather of (count, hash). When they
// differ, every rank gathers enough to name the FIRST differing entry and throws the same
// ModelError, e.g. "model mismatch across ranks: parameter '3.weight' has shape 64x32 on
// rank 0 but 64x16 on rank 1". Ranks in messages are the group's global ranks.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

namespace loom::comm {
class Group;
}

namespace loom::dp {

struct NamedTensor {
  std::string kind;  // "parameter" or "buffer"
  std::string name;
  at::Tensor tensor;
};

void check_same_model(comm::Group& group, const std::vector<NamedTensor>& entries);

// "64x32" ("scalar" for 0-d).
std::string shape_string(const at::Tensor& t);

}  // namespace loom::dp
