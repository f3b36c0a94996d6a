#include "loom/data/apportion.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "loom/core/error.h"

namespace loom::data {

std::vector<int64_t> apportion(int64_t total, const std::vector<double>& weights) {
  LOOM_CHECK(total >= 0, ConfigError, "cannot apportion a negative count {}", total);
  LOOM_CHECK(!weights.empty(), ConfigError, "cannot apportion among zero workers");
  long double sum = 0;
  for (double w : weights) {
    LOOM_CHECK(std::isfinite(w) && w >= 0, ConfigError, "shard weights must be finite and >= 0, got {}", w);
    sum += w;
  }
  LOOM_CHECK(sum > 0, ConfigError, "shard weights must not all be zero");
  const size_t n = weights.size();
  std::vector<int64_t> parts(n);
  std::vector<long double> remainder(n);
  int64_t assigned = 0;
  for (size_t i = 0; i < n; ++i) {
    const long double ideal = static_cast<long double>(total) * weights[i] / sum;
    parts[i] = static_cast<int64_t>(std::floor(ideal));
    remainder[i] = ideal - parts[i];
    assigned += parts[i];
  }
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return remainder[a] > remainder[b]; });
  for (size_t k = 0; assigned < total; ++k) {
    const size_t i = order[k % n];
    if (weights[i] == 0) continue;
    ++parts[i];
    ++assigned;
  }
  return parts;
}

}  // namespace loom::data
