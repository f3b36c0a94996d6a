// Fault injection for tests and drills: LOOM_FAULT_INJECT="kill:RANK:STEP" makes the
// process of that job rank (RANK) kill itself with SIGKILL when it is about to run that
// 0-based global step, as a crashed machine would. Read once, when the Trainer starts.
// Not for production jobs; it is logged as a warning on the rank it will kill.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace loom::train {

struct FaultPlan {
  int rank = -1;
  int64_t step = -1;
};

// Parses the variable's value ("" = none). ConfigError on anything else than kill:R:S.
std::optional<FaultPlan> parse_fault_plan(const std::string& spec);
// From the environment (LOOM_FAULT_INJECT).
std::optional<FaultPlan> fault_plan_from_environment();
// Kills this process if the plan says so for (rank, step).
void maybe_inject_fault(const std::optional<FaultPlan>& plan, int rank, int64_t step);

}  // namespace loom::train
