// How `loom plan` shows ranked plans: a table for people and a JSON array for programs
// (the contract of issue 18: each object has at least strategy, args,
// predicted_samples_per_s, predicted_step_s, predicted_memory_bytes, fits).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "loom/plan/cost_model.h"

namespace loom::plan {

// The `loom train` arguments that run `plan` on the user's model and data: `base` (the
// user's own flags, without those the plan sets), then the plan's, then
// --predicted-samples-per-s so the run's metrics record the prediction.
std::vector<std::string> train_args(const RankedPlan& plan, const Job& job, const std::vector<std::string>& base);

// The first `rows` plans as an aligned text table, best first, with a header naming the
// model, the batch and the cluster.
std::string table(const std::vector<RankedPlan>& plans, const Job& job, const ModelProfile& profile,
                  const Cluster& cluster, size_t rows);

// The user's own flags per strategy (those the strategy uses), the `base` of train_args.
using BaseArgs = std::map<std::string, std::vector<std::string>>;

// Every plan, best first, as a JSON array of objects: strategy, degrees (an object),
// processes, args (train_args with base[strategy]), predicted_samples_per_s,
// predicted_step_s, predicted_memory_bytes, fits, dominant, and the parts (compute_s,
// communication_s, bubble_s, server_s, slowdown) and note when there is one.
std::string to_json(const std::vector<RankedPlan>& plans, const Job& job, const BaseArgs& base);

// A command line shown to a person: each argument quoted for a POSIX shell when needed.
std::string shell_join(const std::vector<std::string>& args);

}  // namespace loom::plan
