#include "loom/train/fault_injection.h"

#include <signal.h>
#include <unistd.h>

#include <cstdlib>

#include "loom/core/error.h"
#include "loom/core/log.h"

namespace loom::train {

std::optional<FaultPlan> parse_fault_plan(const std::string& spec) {
  if (spec.empty()) return std::nullopt;
  FaultPlan plan;
  const auto a = spec.find(':'), b = spec.rfind(':');
  bool ok = spec.rfind("kill:", 0) == 0 && b != a;
  if (ok) {
    try {
      size_t used = 0;
      plan.rank = std::stoi(spec.substr(a + 1, b - a - 1), &used);
      ok = used == b - a - 1;
      plan.step = std::stoll(spec.substr(b + 1), &used);
      ok = ok && used == spec.size() - b - 1;
    } catch (const std::exception&) {
      ok = false;
    }
  }
  LOOM_CHECK(ok && plan.rank >= 0 && plan.step >= 0, ConfigError,
             "LOOM_FAULT_INJECT must be kill:RANK:STEP, got '{}'", spec);
  return plan;
}

std::optional<FaultPlan> fault_plan_from_environment() {
  const char* spec = std::getenv("LOOM_FAULT_INJECT");
  return parse_fault_plan(spec ? spec : "");
}

void maybe_inject_fault(const std::optional<FaultPlan>& plan, int rank, int64_t step) {
  if (!plan || plan->rank != rank || plan->step != step) return;
  log::warn("LOOM_FAULT_INJECT: killing this worker (SIGKILL) before step {}", step);
  ::kill(::getpid(), SIGKILL);
}

}  // namespace loom::train
