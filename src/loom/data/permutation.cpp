#include "loom/data/partitioner.h"

#include <numeric>
#include <utility>

#include "loom/core/error.h"
#include "loom/data/rng.h"

namespace loom::data {

std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch) {
  LOOM_CHECK(n >= 0, Error, "epoch_permutation: the size must be non-negative, got {}", n);
  LOOM_CHECK(epoch >= 0, Error, "epoch_permutation: the epoch must be non-negative, got {}", epoch);
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t{0});
  Rng rng(seed, static_cast<uint64_t>(epoch));
  for (int64_t i = n - 1; i > 0; --i) {
    const auto j = static_cast<int64_t>(rng.below(static_cast<uint64_t>(i) + 1));
    std::swap(order[i], order[j]);
  }
  return order;
}

}  // namespace loom::data
