#include "loom/data/partitioners/strided_partitioner.h"

#include "loom/core/error.h"
#include "loom/data/partitioner.h"

namespace loom::data {

StridedPartitioner::StridedPartitioner(PartitionOptions o) : Partitioner(std::move(o)) {
  const auto& p = options_;
  if (p.scheme != Scheme::strided) return;  // a base of another scheme; it checks its own sizes
  LOOM_CHECK(p.batch_size >= p.world_size, ConfigError,
             "--batch-size {} is smaller than the {} data-parallel workers (each needs at least one sample)",
             p.batch_size, p.world_size);
  LOOM_CHECK(p.batch_size % p.world_size == 0, ConfigError,
             "--batch-size {} does not divide evenly among {} workers (use a multiple of {}, or --partition "
             "proportional)",
             p.batch_size, p.world_size, p.world_size);
}

const std::vector<int64_t>& StridedPartitioner::permutation(int64_t epoch) {
  if (epoch != cached_epoch_) {
    cached_ = epoch_permutation(options_.num_samples, options_.seed, epoch);
    cached_epoch_ = epoch;
  }
  return cached_;
}

std::vector<int64_t> StridedPartitioner::slice(int64_t epoch, int64_t step, int64_t begin, int64_t len) {
  const auto& perm = permutation(epoch);
  const int64_t start = step * options_.batch_size + begin;
  return std::vector<int64_t>(perm.begin() + start, perm.begin() + start + len);
}

std::vector<int64_t> StridedPartitioner::part_sizes(int64_t, int64_t) {
  return std::vector<int64_t>(options_.world_size, options_.batch_size / options_.world_size);
}

std::vector<int64_t> StridedPartitioner::indices(int rank, int64_t epoch, int64_t step) {
  check_position(rank, epoch, step);
  const int64_t per = options_.batch_size / options_.world_size;
  return slice(epoch, step, rank * per, per);
}

}  // namespace loom::data
