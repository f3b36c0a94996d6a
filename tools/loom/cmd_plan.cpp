// `loom plan`: the planner (issue 18, docs/planner.md). Takes `loom train`'s flags (and
// --config). Today it profiles only: `--profile-only` measures the model, layer by layer,
// at every per-process batch size a plan over up to --nproc processes can run, with
// --threads threads, and writes the profile as JSON (plan/profile.h) to --out or stdout.
// The cost model, the ranked plans and --strategy auto are still to come.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <iostream>
#include <memory>

#include "commands.h"
#include "loom/core/atomic_file.h"
#include "loom/core/error.h"
#include "loom/core/log.h"
#include "loom/core/options.h"
#include "loom/plan/profile.h"
#include "loom/train/model_for.h"
#include "loom/train/train_config.h"

namespace loom::cli {

namespace {

struct PlanCommand {
  train::TrainConfig config;
  OptionTable options;
  std::string config_file;
  bool profile_only = false;
  std::string out;
  int repeats = 5;
};

int run_plan(PlanCommand& cmd) {
  if (!cmd.config_file.empty()) cmd.options.load_toml(cmd.config_file);
  const train::TrainConfig& c = cmd.config;
  log::set_level(log::parse_level(c.log_level));
  train::validate(c);
  LOOM_CHECK(cmd.profile_only, ConfigError,
             "loom plan: only --profile-only is available so far (the cost model, the ranked plans and --strategy "
             "auto are still to come: issue 18)");
  LOOM_CHECK(cmd.repeats >= 1, ConfigError, "--profile-repeats must be at least 1, got {}", cmd.repeats);
  train::ModelForConfig m = train::model_for(c);
  plan::ProfileOptions o;
  o.batches = plan::batches_that_matter(c.batch_size, std::max(1, static_cast<int>(c.nproc)));
  o.threads = static_cast<int>(c.threads);
  o.repeats = cmd.repeats;
  const plan::ModelProfile profile = plan::profile_model(m.model, c.model, m.sample_shape, o);
  log::info("profiled {} ({} parameters, {} layers) at batch sizes {} with {} thread(s): {:.2f} ms per step at {}",
            c.model, profile.param_count(), profile.layers.size(), fmt::join(profile.batches, ","), o.threads,
            1e3 * profile.compute_s(profile.batches.front()), profile.batches.front());
  const std::string json = profile.to_json() + "\n";
  if (cmd.out.empty()) {
    std::cout << json;
  } else {
    write_file_atomic(cmd.out, json);
    log::info("wrote the profile to {}", cmd.out);
  }
  return 0;
}

}  // namespace

Command add_plan_command(CLI::App& app) {
  auto cmd = std::make_shared<PlanCommand>();
  CLI::App* sub = app.add_subcommand("plan", "choose a strategy (so far: --profile-only, the model's profile as JSON)");
  sub->add_option("--config", cmd->config_file, "TOML file of settings; keys are the flag names")
      ->check(CLI::ExistingFile);
  sub->add_flag("--profile-only", cmd->profile_only,
                "measure the model per layer (forward, backward, bytes) at the batch sizes a plan can use");
  sub->add_option("--out", cmd->out, "write the profile here (default: standard output)");
  sub->add_option("--profile-repeats", cmd->repeats, "timed runs per layer and batch size (median)");
  train::register_train_options(cmd->options, cmd->config);
  cmd->options.add_to(*sub);
  return {sub, [cmd] { return run_plan(*cmd); }};
}

}  // namespace loom::cli
