// The strided scheme (see partitioner.h): equal contiguous parts of each global batch.
#pragma once

#include "loom/data/partitioner.h"

namespace loom::data {

class StridedPartitioner : public Partitioner {
 public:
  explicit StridedPartitioner(PartitionOptions options);
  int64_t steps_per_epoch() const override { return options_.num_samples / options_.batch_size; }
  std::vector<int64_t> indices(int rank, int64_t epoch, int64_t step) override;
  std::vector<int64_t> part_sizes(int64_t epoch, int64_t step) override;

 protected:
  // This epoch's permutation, computed once per epoch.
  const std::vector<int64_t>& permutation(int64_t epoch);
  // Slice [begin, begin + len) of step `step`'s global batch.
  std::vector<int64_t> slice(int64_t epoch, int64_t step, int64_t begin, int64_t len);

 private:
  int64_t cached_epoch_ = -1;
  std::vector<int64_t> cached_;
};

}  // namespace loom::data
