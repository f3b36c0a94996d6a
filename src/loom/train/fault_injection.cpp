#include "loom/train/fault_injection.h"

#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <vector>

#include "loom/core/error.h"
#include "loom/core/log.h"

namespace loom::train {

std::optional<FaultPlan> parse_fault_plan(const std::string& spec) {
  if (spec.empty()) return std::nullopt;
  std::vector<std::string> fields;
  for (size_t at = 0;;) {
    const size_t colon = spec.find(':', at);
    fields.push_back(spec.substr(at, colon == std::string::npos ? std::string::npos : colon - at));
    if (colon == std::string::npos) break;
    at = colon + 1;
  }
  FaultPlan plan;
  bool ok = (fields.size() == 3 || (fields.size() == 4 && fields[3] == "always")) &&
            (fields[0] == "kill" || fields[0] == "stop" || fields[0] == "nan" || fields[0] == "nanmodel");
  if (ok) {
    try {
      size_t used = 0;
      plan.action = fields[0];
      plan.rank = std::stoi(fields[1], &used);
      ok = used == fields[1].size();
      plan.step = std::stoll(fields[2], &used);
      ok = ok && used == fields[2].size();
      plan.always = fields.size() == 4;
    } catch (const std::exception&) {
      ok = false;
    }
  }
  LOOM_CHECK(
      ok && plan.rank >= 0 && plan.step >= 0, ConfigError,
      "LOOM_FAULT_INJECT must be kill:RANK:STEP, stop:RANK:STEP, nan:RANK:STEP or nanmodel:RANK:STEP (optionally "
      ":always), "
      "got '{}'",
      spec);
  return plan;
}

std::optional<FaultPlan> fault_plan_for_attempt(const std::string& spec, int restart_count) {
  auto plan = parse_fault_plan(spec);
  if (plan && !plan->always && restart_count != 0) return std::nullopt;
  return plan;
}

void maybe_inject_fault(const std::optional<FaultPlan>& plan, int rank, int64_t step) {
  if (!plan || plan->rank != rank || plan->step != step) return;
  if (plan->action != "kill" && plan->action != "stop") return;
  if (plan->action == "stop") {
    log::warn("LOOM_FAULT_INJECT: stopping this process (SIGSTOP) before step {}", step);
    ::kill(::getpid(), SIGSTOP);
    return;  // continued by SIGCONT, if ever
  }
  log::warn("LOOM_FAULT_INJECT: killing this process (SIGKILL) before step {}", step);
  ::kill(::getpid(), SIGKILL);
}

bool poisons_batch(const std::optional<FaultPlan>& plan, int rank, int64_t step) {
  if (!plan || plan->action != "nan" || plan->rank != rank || plan->step != step) return false;
  log::warn("LOOM_FAULT_INJECT: filling the inputs of step {} with NaN", step);
  return true;
}

bool poisons_model_after(const std::optional<FaultPlan>& plan, int rank, int64_t step) {
  if (!plan || plan->action != "nanmodel" || plan->rank != rank || plan->step != step) return false;
  log::warn("LOOM_FAULT_INJECT: filling this rank's first parameter with NaN after step {}", step);
  return true;
}

}  // namespace loom::train
