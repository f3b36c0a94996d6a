#include "loom/pipeline/stage_split.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <sstream>

#include "loom/core/choice.h"
#include "loom/core/error.h"

namespace loom::pipeline {

namespace {
constexpr Choice<Balance> kBalances[] = {
    {"uniform", Balance::uniform}, {"params", Balance::params}, {"time", Balance::time}};
}  // namespace

Balance parse_balance(const std::string& name) { return parse_choice("balance", name, kBalances); }

std::string balance_name(Balance balance) { return choice_name(balance, kBalances); }

namespace {
void check_stages(int64_t layers, int stages) {
  LOOM_CHECK(stages >= 1, ConfigError, "a pipeline needs at least one stage, got {}", stages);
  LOOM_CHECK(stages <= layers, ConfigError,
             "the model has {} layers, fewer than the {} pipeline stages (each stage needs a layer): use fewer "
             "processes or a deeper model",
             layers, stages);
}
}  // namespace

std::vector<int64_t> parse_split(const std::string& text, int64_t layers, int stages) {
  std::vector<int64_t> counts;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    LOOM_CHECK(used > 0 && used == item.size(), ConfigError, "--split '{}': '{}' is not a layer count", text, item);
    LOOM_CHECK(v >= 1, ConfigError, "--split '{}': every stage needs at least one layer, got {}", text, v);
    counts.push_back(v);
  }
  LOOM_CHECK(!text.empty() && text.back() != ',', ConfigError, "--split '{}': expected counts like 4,3,2", text);
  LOOM_CHECK(static_cast<int>(counts.size()) == stages, ConfigError,
             "--split '{}' has {} stage(s) but the pipeline has {} (one per process)", text, counts.size(), stages);
  const int64_t sum = std::accumulate(counts.begin(), counts.end(), int64_t{0});
  LOOM_CHECK(sum == layers, ConfigError, "--split '{}' covers {} layers but the model has {}", text, sum, layers);
  return counts;
}

std::vector<int64_t> uniform_split(int64_t layers, int stages) {
  check_stages(layers, stages);
  std::vector<int64_t> counts(stages, layers / stages);
  for (int64_t s = 0; s < layers % stages; ++s) ++counts[s];
  return counts;
}

std::vector<int64_t> balanced_split(const std::vector<double>& costs, int stages) {
  const int64_t n = static_cast<int64_t>(costs.size());
  check_stages(n, stages);
  for (double c : costs) LOOM_CHECK(std::isfinite(c) && c >= 0, ConfigError, "layer cost {} is not >= 0", c);
  std::vector<double> prefix(n + 1, 0);
  for (int64_t i = 0; i < n; ++i) prefix[i + 1] = prefix[i] + costs[i];
  auto cost = [&](int64_t a, int64_t b) { return prefix[b] - prefix[a]; };
  constexpr double kInf = std::numeric_limits<double>::infinity();
  // Pass 1: the smallest achievable largest stage cost. best[k][i]: first i layers in k stages.
  std::vector<std::vector<double>> best(stages + 1, std::vector<double>(n + 1, kInf));
  best[0][0] = 0;
  for (int k = 1; k <= stages; ++k) {
    for (int64_t i = k; i <= n; ++i) {
      for (int64_t j = k - 1; j < i; ++j) {
        best[k][i] = std::min(best[k][i], std::max(best[k - 1][j], cost(j, i)));
      }
    }
  }
  const double limit = best[stages][n] * (1 + 1e-9) + 1e-12;
  // Pass 2: among splits whose every stage costs <= limit, the one closest to uniform
  // layer counts (least squared deviation), ties to the earliest cut.
  const double ideal = static_cast<double>(n) / stages;
  std::vector<std::vector<double>> dev(stages + 1, std::vector<double>(n + 1, kInf));
  std::vector<std::vector<int64_t>> cut(stages + 1, std::vector<int64_t>(n + 1, -1));
  dev[0][0] = 0;
  for (int k = 1; k <= stages; ++k) {
    for (int64_t i = k; i <= n; ++i) {
      for (int64_t j = k - 1; j < i; ++j) {
        if (dev[k - 1][j] == kInf || cost(j, i) > limit) continue;
        const double d = dev[k - 1][j] + (i - j - ideal) * (i - j - ideal);
        if (d < dev[k][i] - 1e-12) {
          dev[k][i] = d;
          cut[k][i] = j;
        }
      }
    }
  }
  std::vector<int64_t> counts(stages);
  int64_t i = n;
  for (int k = stages; k >= 1; --k) {
    const int64_t j = cut[k][i];
    counts[k - 1] = i - j;
    i = j;
  }
  return counts;
}

std::vector<int64_t> stage_offsets(const std::vector<int64_t>& split) {
  std::vector<int64_t> offsets{0};
  for (int64_t c : split) offsets.push_back(offsets.back() + c);
  return offsets;
}

std::vector<double> stage_costs(const std::vector<double>& costs, const std::vector<int64_t>& split) {
  const auto offsets = stage_offsets(split);
  std::vector<double> out;
  for (size_t s = 0; s < split.size(); ++s) {
    double sum = 0;
    for (int64_t i = offsets[s]; i < offsets[s + 1] && i < static_cast<int64_t>(costs.size()); ++i) sum += costs[i];
    out.push_back(sum);
  }
  return out;
}

std::string describe_split(const std::vector<int64_t>& split, const std::vector<double>& costs,
                           const std::string& unit) {
  const auto offsets = stage_offsets(split);
  const auto per_stage = costs.empty() ? std::vector<double>{} : stage_costs(costs, split);
  std::string out = fmt::format("split {} = layers", fmt::join(split, ","));
  for (size_t s = 0; s < split.size(); ++s) {
    out += fmt::format("{} {}-{}", s ? " |" : "", offsets[s], offsets[s + 1] - 1);
    if (!per_stage.empty()) out += fmt::format(" ({:.4g}{})", per_stage[s], unit);
  }
  return out;
}

}  // namespace loom::pipeline
