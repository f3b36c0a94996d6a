// What `loom plan` and `loom train --strategy auto` share: the planner's inputs for a
// TrainConfig (the model's profile, measured or read; the cluster, read, calibrated or
// assumed) and the ranked plans.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "loom/core/options.h"
#include "loom/plan/cluster.h"
#include "loom/plan/cost_model.h"
#include "loom/plan/profile.h"
#include "loom/train/train_config.h"

namespace loom::cli {

struct PlanInputs {
  std::string profile_file;        // read this profile instead of measuring the model
  std::string cluster_file;        // read this cluster file
  bool calibrate = false;          // measure this machine (ignored with cluster_file)
  std::string save_cluster;        // --calibrate: write the measured cluster here
  double calibrate_budget_s = 12;  // plan::CalibrateOptions::budget_s
  int64_t overhead_steps = 120;    // plan::OverheadOptions::steps
  int profile_repeats = 5;
  std::string strategies;  // "allreduce,pipeline"; empty: all
  int max_processes = 1;   // processes a plan may use (--nproc, else this machine's cores)
  // `loom train` arguments of a one-process run of the job ("--strategy single" and the
  // user's flags it uses, without run length or outputs): the measured profile is
  // anchored to a short run with them. Empty: not anchored.
  std::vector<std::string> anchor_args;
};

struct Planned {
  plan::ModelProfile profile;
  plan::Cluster cluster;
  plan::Job job;
  std::vector<plan::RankedPlan> ranked;  // best first; those that do not fit last
};

// The profile of the model `c` trains, at every batch a plan over up to `max_processes`
// processes can run, with `c`'s threads and optimizer; with `anchor_args`, its times are
// scaled to a short real `loom train --strategy single` run of the job (anchor()).
plan::ModelProfile measure_profile(const train::TrainConfig& c, int max_processes, int repeats,
                                   const std::vector<std::string>& anchor_args = {});

Planned plan_job(const train::TrainConfig& c, const PlanInputs& in);

// `loom train --strategy auto`: the best plan that fits and trains as one process would
// (asynchronous plans are left out), or a ConfigError when none fits.
const plan::RankedPlan& choose_for_auto(const Planned& planned);
// One line saying which plan was chosen and why (its prediction against one process and
// the runner-up).
std::string why_chosen(const Planned& planned, const plan::RankedPlan& chosen);
// Sets the fields of `c` the plan's arguments set (and predicted_samples_per_s).
void apply_plan(const plan::RankedPlan& chosen, const plan::Job& job, train::TrainConfig& c);
// True (with a warning) when --config set a flag that --strategy single does not use:
// the one-process run that anchors the profile would read the file and refuse it, so
// the profile is left unanchored.
bool file_sets_strategy_flags(const train::TrainConfig& c, const OptionTable& options);

// `argv` (a whole `loom train` command line) without the options named in `names` ("--name
// value" or "--name=value"; an on/off flag, for which takes_value(name) is false, as
// "--name" or "--no-name"), with `extra` appended.
std::vector<std::string> replace_flags(const std::vector<std::string>& argv, const std::vector<std::string>& names,
                                       const std::vector<std::string>& extra,
                                       const std::function<bool(const std::string&)>& takes_value);

// The flags of `loom train` a plan sets, and the planner's inputs (left out of the user's own when the plan's
// command is built), and those that only set the run's length and outputs.
const std::vector<std::string>& flags_a_plan_sets();
const std::vector<std::string>& run_length_and_output_flags();

}  // namespace loom::cli
