#include "loom/data/partitioners/random_partitioner.h"

#include <algorithm>

#include "loom/core/error.h"
#include "loom/data/apportion.h"
#include "loom/data/partitioner.h"
#include "loom/data/rng.h"

namespace loom::data {

namespace {
// Streams of the shard assignment and of each shard's per-epoch order, derived from the
// seed so that they never coincide with the global epoch permutation's streams.
constexpr uint64_t kShardSalt = 0x7368617264730000ULL;  // "shards"
uint64_t shard_seed(uint64_t seed) { return mix64(seed ^ kShardSalt); }
uint64_t order_seed(uint64_t seed, int rank) { return mix64(seed ^ kShardSalt ^ (static_cast<uint64_t>(rank) + 1)); }
}  // namespace

RandomPartitioner::RandomPartitioner(PartitionOptions o) : Partitioner(std::move(o)) {
  const auto& p = options_;
  const int w = p.world_size;
  LOOM_CHECK(p.num_samples >= w, ConfigError, "--partition random: {} samples cannot make {} non-empty shards",
             p.num_samples, w);
  LOOM_CHECK(p.batch_size >= w, ConfigError,
             "--batch-size {} is smaller than the {} data-parallel workers (each needs at least one sample)",
             p.batch_size, w);
  const std::vector<double> equal(w, 1.0);
  const auto shard_sizes = apportion(p.num_samples, equal);
  per_step_ = apportion(p.batch_size, equal);
  const auto assignment = epoch_permutation(p.num_samples, shard_seed(p.seed), 0);
  int64_t offset = 0;
  shards_.resize(w);
  for (int r = 0; r < w; ++r) {
    shards_[r].assign(assignment.begin() + offset, assignment.begin() + offset + shard_sizes[r]);
    offset += shard_sizes[r];
  }
  steps_ = p.drop_last ? INT64_MAX : 0;
  for (int r = 0; r < w; ++r) {
    const int64_t size = static_cast<int64_t>(shards_[r].size());
    steps_ = p.drop_last ? std::min(steps_, size / per_step_[r])
                         : std::max(steps_, (size + per_step_[r] - 1) / per_step_[r]);
  }
  LOOM_CHECK(steps_ >= 1, ConfigError,
             "--partition random: shards of {} samples cannot fill one step of {} samples per worker (lower "
             "--batch-size or use --no-drop-last)",
             shards_.back().size(), per_step_.front());
}

std::vector<int64_t> RandomPartitioner::part_sizes(int64_t, int64_t) { return per_step_; }

std::vector<int64_t> RandomPartitioner::indices(int rank, int64_t epoch, int64_t step) {
  check_position(rank, epoch, step);
  const auto& shard = shards_[rank];
  if (rank != cached_rank_ || epoch != cached_epoch_) {
    const auto order = epoch_permutation(static_cast<int64_t>(shard.size()), order_seed(options_.seed, rank), epoch);
    cached_order_.resize(order.size());
    for (size_t i = 0; i < order.size(); ++i) cached_order_[i] = shard[order[i]];
    cached_rank_ = rank;
    cached_epoch_ = epoch;
  }
  const int64_t b = per_step_[rank];
  const int64_t size = static_cast<int64_t>(cached_order_.size());
  std::vector<int64_t> out(b);
  for (int64_t i = 0; i < b; ++i) out[i] = cached_order_[(step * b + i) % size];  // wraps only without drop_last
  return out;
}

}  // namespace loom::data
