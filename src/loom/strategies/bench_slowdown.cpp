#include "loom/strategies/bench_slowdown.h"

#include <chrono>
#include <thread>

#include "loom/core/error.h"
#include "loom/core/log.h"

namespace loom::strategies {

double bench_slowdown_for(const std::string& spec, int rank) {
  if (spec.empty()) return 1.0;
  const auto colon = spec.find(':');
  int target = -1;
  double factor = 0;
  try {
    target = std::stoi(spec.substr(0, colon));
    factor = std::stod(spec.substr(colon + 1));
  } catch (const std::exception&) {}
  LOOM_CHECK(colon != std::string::npos && target >= 0 && factor >= 1, ConfigError,
             "--bench-slowdown: '{}' is not RANK:FACTOR with FACTOR >= 1", spec);
  if (target != rank) return 1.0;
  log::warn("--bench-slowdown: this worker computes {}x slower (benchmark aid)", factor);
  return factor;
}

double apply_bench_slowdown(double factor, double compute_s) {
  if (factor <= 1) return compute_s;
  std::this_thread::sleep_for(std::chrono::duration<double>((factor - 1) * compute_s));
  return compute_s * factor;
}

}  // namespace loom::strategies
