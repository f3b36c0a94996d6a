#include "loom/data/partitioners/proportional_partitioner.h"

#include "loom/core/error.h"
#include "loom/data/apportion.h"

namespace loom::data {

ProportionalPartitioner::ProportionalPartitioner(PartitionOptions o) : StridedPartitioner(std::move(o)) {
  std::vector<double> w = options_.weights;
  if (w.empty()) w.assign(options_.world_size, 1.0);
  set_weights(w);
}

void ProportionalPartitioner::set_weights(const std::vector<double>& weights) {
  LOOM_CHECK(static_cast<int>(weights.size()) == options_.world_size, ConfigError,
             "--shard-weights has {} weights for {} data-parallel workers", weights.size(), options_.world_size);
  auto sizes = apportion(options_.batch_size, weights);
  for (size_t r = 0; r < sizes.size(); ++r) {
    LOOM_CHECK(sizes[r] > 0 || weights[r] == 0, ConfigError,
               "--batch-size {} is too small for --shard-weights: worker {} (weight {}) would get no sample",
               options_.batch_size, r, weights[r]);
  }
  options_.weights = weights;
  sizes_ = std::move(sizes);
}

std::vector<int64_t> ProportionalPartitioner::indices(int rank, int64_t epoch, int64_t step) {
  check_position(rank, epoch, step);
  int64_t begin = 0;
  for (int r = 0; r < rank; ++r) begin += sizes_[r];
  return slice(epoch, step, begin, sizes_[rank]);
}

}  // namespace loom::data
