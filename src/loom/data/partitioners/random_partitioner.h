// The random scheme (see partitioner.h): fixed seeded shards, reshuffled within each
// epoch; a worker never touches another worker's samples.
#pragma once

#include "loom/data/partitioner.h"

namespace loom::data {

class RandomPartitioner : public Partitioner {
 public:
  explicit RandomPartitioner(PartitionOptions options);
  int64_t steps_per_epoch() const override { return steps_; }
  std::vector<int64_t> indices(int rank, int64_t epoch, int64_t step) override;
  std::vector<int64_t> part_sizes(int64_t epoch, int64_t step) override;

  // The samples of `rank`'s shard (fixed for the whole run), in shard order.
  const std::vector<int64_t>& shard(int rank) const { return shards_[rank]; }

 private:
  std::vector<std::vector<int64_t>> shards_;
  std::vector<int64_t> per_step_;  // samples per step of each rank
  int64_t steps_ = 0;
  int cached_rank_ = -1;
  int64_t cached_epoch_ = -1;
  std::vector<int64_t> cached_order_;  // the cached rank's shard order for the cached epoch
};

}  // namespace loom::data
