// Fault injection for tests and drills: LOOM_FAULT_INJECT="ACTION:RANK:STEP[:always]"
// makes the process of that job rank act when it is about to run that 0-based global step:
//   kill  SIGKILL itself, as a crashed machine would;
//   stop  SIGSTOP itself, as a hung or partitioned peer would (its peers must time out);
//   nan   fill its batch's inputs with NaN, as a corrupt sample would (--skip-nonfinite);
//   nanmodel  after that step's update, fill the first parameter of the model it holds
//         with NaN, as a silently broken update would (--save must refuse the model).
// It fires on the launcher's first attempt only (LOOM_RESTART_COUNT 0), so a restarted
// job runs clean, unless ":always" asks for every attempt. Parsed once, when the Trainer
// or the parameter server starts. Not for production jobs; it is logged as a warning on the rank it acts on.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace loom::train {

struct FaultPlan {
  std::string action = "kill";  // kill | stop | nan | nanmodel
  int rank = -1;
  int64_t step = -1;
  bool always = false;  // on every attempt, restarts included
};

// Parses the variable's value ("" = none). ConfigError on anything else than kill:R:S.
std::optional<FaultPlan> parse_fault_plan(const std::string& spec);
// The plan of LOOM_FAULT_INJECT's value `spec` for attempt `restart_count` of the job:
// none on a restart (restart_count > 0) unless the plan says always. The entry point
// reads both variables (JobEnvironment in train/trainer.h).
std::optional<FaultPlan> fault_plan_for_attempt(const std::string& spec, int restart_count);
// Kills or stops this process if the plan says so for (rank, step).
void maybe_inject_fault(const std::optional<FaultPlan>& plan, int rank, int64_t step);
// True when the plan's action is nan for (rank, step): the caller poisons that batch.
bool poisons_batch(const std::optional<FaultPlan>& plan, int rank, int64_t step);
// True when the plan's action is nanmodel for (rank, step): after that step the caller
// fills its model's first parameter with NaN.
bool poisons_model_after(const std::optional<FaultPlan>& plan, int rank, int64_t step);

}  // namespace loom::train
