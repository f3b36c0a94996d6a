// The proportional scheme (see partitioner.h): each global batch of the strided order is
// cut into parts proportional to the workers' weights.
#pragma once

#include "loom/data/partitioners/strided_partitioner.h"

namespace loom::data {

class ProportionalPartitioner : public StridedPartitioner {
 public:
  explicit ProportionalPartitioner(PartitionOptions options);
  std::vector<int64_t> indices(int rank, int64_t epoch, int64_t step) override;
  std::vector<int64_t> part_sizes(int64_t /*epoch*/, int64_t /*step*/) override { return sizes_; }
  void set_weights(const std::vector<double>& weights) override;

 private:
  std::vector<int64_t> sizes_;  // apportion(B, weights)
};

}  // namespace loom::data
