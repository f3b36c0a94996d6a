// --bench-slowdown RANK:FACTOR, a benchmark aid (never for training): that rank sleeps
// (FACTOR - 1) times as long as it computed, every step, standing in for a slower
// machine. Shared by the strategies that support it.
#pragma once

#include <string>

namespace loom::strategies {

// The factor for `rank` (1 when the spec is empty or names another rank). ConfigError
// when the spec is not RANK:FACTOR with FACTOR >= 1. Logs a warning on the slowed rank.
double bench_slowdown_for(const std::string& spec, int rank);

// Sleeps (factor - 1) * compute_s and returns the stretched compute time.
double apply_bench_slowdown(double factor, double compute_s);

}  // namespace loom::strategies
