// Stage split: how the L layers of a Sequential are cut into P contiguous stages.
//
// A split is P layer counts, each >= 1, summing to L: stage s holds layers
// [sum(counts[0..s)), sum(counts[0..s])). Ways to choose one:
//   --split 4,3,2     explicit counts (parse_split checks them against the model)
//   --balance uniform as equal layer counts as possible (earlier stages get the extra)
//   --balance params  minimise the largest stage's parameter count
//   --balance time    minimise the slowest stage's measured forward+backward time
// balanced_split() is exact (the smallest possible largest stage cost); among the splits
// that reach it, it takes the one closest to uniform layer counts, so zero-cost layers
// (ReLU, Flatten) do not pile up at one end. Deterministic: same costs, same split.
//
// Pure functions, no torch: layer costs come from layer_costs.h.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace loom::pipeline {

enum class Balance { uniform, params, time };

// "uniform" | "params" | "time"; anything else is a ConfigError naming --balance.
Balance parse_balance(const std::string& name);
std::string balance_name(Balance balance);

// "4,3,2" for a model of `layers` layers and `stages` stages; ConfigError naming --split
// when malformed, when a count is < 1, when there are not `stages` counts, or when they
// do not sum to `layers`.
std::vector<int64_t> parse_split(const std::string& text, int64_t layers, int stages);

// ConfigError when stages < 1 or stages > layers (a stage needs at least one layer).
std::vector<int64_t> uniform_split(int64_t layers, int stages);
std::vector<int64_t> balanced_split(const std::vector<double>& layer_costs, int stages);

// The first layer of each stage, plus the total at the end (size P+1).
std::vector<int64_t> stage_offsets(const std::vector<int64_t>& split);
// Per stage, the sum of its layers' costs.
std::vector<double> stage_costs(const std::vector<double>& layer_costs, const std::vector<int64_t>& split);
// "layers 0-3 | 4-6 | 7-8" and, when costs are given, each stage's cost with `unit`.
std::string describe_split(const std::vector<int64_t>& split, const std::vector<double>& layer_costs = {},
                           const std::string& unit = "");

}  // namespace loom::pipeline
