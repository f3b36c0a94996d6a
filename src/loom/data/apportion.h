// Largest-remainder (Hamilton) apportionment: split `total` items into parts proportional
// to `weights`. The parts sum to `total` exactly, each differs from its ideal share
// total * w_i / sum(w) by less than one, equal weights give parts that differ by at most
// one (earlier indices get the extra items), and a zero weight gets zero.
// Ties between equal remainders go to the lower index. Pure function.
#pragma once

#include <cstdint>
#include <vector>

namespace loom::data {

// Requires total >= 0, weights non-empty, finite and >= 0 with a positive sum
// (ConfigError otherwise).
std::vector<int64_t> apportion(int64_t total, const std::vector<double>& weights);

}  // namespace loom::data
