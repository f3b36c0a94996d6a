// One key on a parameter server: a slice of one parameter (shard_plan.h), its optimizer,
// the gradient its next update applies, how many updates it has had, and the pulls that
// wait for a later version. The server (server.cpp) owns the slots; the consistency rule
// (consistency.h) decides when a push becomes an update and when a pull is answered.
//
// Thread-safety: none; only the server's serving thread touches a slot.
#pragma once

#include <torch/optim/optimizer.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace loom::ps {

// A pull that is not answered yet (its clock is ahead of what the rule allows).
struct ParkedPull {
  std::string peer;
  uint32_t worker = 0;
  uint64_t seq = 0;
  int64_t clock = 0;
};

struct Slot {
  at::Tensor param;  // the server's values: a leaf that requires grad, for the optimizer
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  at::Tensor combined;  // the gradient applied by the next update (param.grad)
  int64_t version = 0;  // updates applied
  std::vector<ParkedPull> parked;
};

}  // namespace loom::ps
