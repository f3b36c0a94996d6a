// An in-memory classification data set and the batches drawn from it.
//
// Ownership: a Dataset owns its tensors (refcounted at::Tensor; copying a Dataset is
// cheap and shares the storage). Batches are fresh tensors, never views into the set.
// Thread-safety: a Dataset is immutable after loading, so concurrent gather() calls on
// the same Dataset are safe.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace loom::data {

enum class Split { train, test };
const char* to_string(Split split);  // "train" | "test"

struct Dataset {
  at::Tensor inputs;                  // float32 [N, sample_shape...], contiguous, on the CPU
  at::Tensor targets;                 // int64 [N] class indices in [0, num_classes), contiguous
  std::string name;                   // e.g. "fashion-mnist", "synthetic"
  std::vector<int64_t> sample_shape;  // one input's shape, e.g. {1, 28, 28}
  int64_t num_classes = 0;

  int64_t size() const;  // N; 0 for a default-constructed Dataset
};

struct Batch {
  at::Tensor inputs;   // float32 [B, sample_shape...], contiguous
  at::Tensor targets;  // int64 [B]

  int64_t size() const;  // B
};

// The rows `indices` of the data set, in that order (repeats allowed). An index outside
// [0, size()) throws loom::DataError naming it and the data set.
Batch gather(const Dataset& dataset, const std::vector<int64_t>& indices);
// Same, with a 1-D integer tensor of indices (any integer dtype, CPU).
Batch gather(const Dataset& dataset, const at::Tensor& indices);

}  // namespace loom::data
