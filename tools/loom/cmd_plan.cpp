// `loom plan`: the planner (issue 18, docs/planner.md). Takes `loom train`'s flags (and
// --config): profiles the model (or reads --profile), takes the cluster from --cluster,
// --calibrate or this machine's assumed defaults, predicts every plan over up to --nproc
// processes (plan/cost_model.h) and prints them ranked, with the `loom train` command of
// the best; --json prints them all as JSON; --verify K runs the best K and prints
// predicted against measured. --profile-only writes the profile and stops.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <memory>
#include <thread>

#include "commands.h"
#include "loom/core/atomic_file.h"
#include "loom/core/error.h"
#include "loom/core/log.h"
#include "loom/core/options.h"
#include "loom/launch/self_executable.h"
#include "loom/plan/report.h"
#include "loom/plan/verify.h"
#include "loom/train/strategy_options.h"
#include "planning.h"

namespace loom::cli {

namespace {

struct PlanCommand {
  train::TrainConfig config;
  OptionTable options;
  std::string config_file;
  PlanInputs inputs;
  bool profile_only = false;
  bool json = false;
  std::string out;
  size_t top = 15;
  int verify = 0;
  int64_t verify_steps = 40;
  bool no_anchor = false;
};

// Processes a plan may use: --nproc when given, else this machine's cores.
int processes_available(const PlanCommand& cmd) {
  if (cmd.options.given_on_command_line("nproc") || cmd.config.nproc > 1) return cmd.config.nproc;
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

void write_output(const PlanCommand& cmd, const std::string& text) {
  if (cmd.out.empty()) {
    std::cout << text << std::flush;
  } else {
    write_file_atomic(cmd.out, text);
    log::info("wrote {}", cmd.out);
  }
}

// Runs the best `k` plans that fit for verify_steps steps each and prints predicted
// against measured. Returns 0, or 1 when a run failed.
int verify(const PlanCommand& cmd, const Planned& planned, const plan::BaseArgs& base) {
  plan::MeasureOptions mo;
  mo.loom = launch::self_executable();
  mo.steps = cmd.verify_steps;
  mo.warmup_steps = std::max<int64_t>(1, cmd.verify_steps / 4);
  std::cout << fmt::format("\nverify: the best {} plan(s), {} steps each (samples/s after {} warm-up steps)\n",
                           cmd.verify, mo.steps, mo.warmup_steps);
  std::cout << fmt::format("{:>4}  {:<10} {:<34} {:>10} {:>10} {:>8}\n", "rank", "strategy", "degrees", "predicted",
                           "measured", "error");
  std::vector<double> errors;
  int failed = 0;
  int shown = 0;
  for (size_t i = 0; i < planned.ranked.size() && shown < cmd.verify; ++i) {
    const auto& r = planned.ranked[i];
    if (!r.prediction.fits) continue;
    ++shown;
    const plan::MeasuredRun m = plan::measure(plan::train_args(r, planned.job, base.at(r.plan.strategy)), mo);
    if (!m.ok) {
      ++failed;
      std::cout << fmt::format("{:>4}  {:<10} {:<34} {:>10.1f} {:>10} {:>8}  {}\n", i + 1, r.plan.strategy,
                               r.plan.degrees(), r.prediction.samples_per_s, "failed", "", m.error);
      continue;
    }
    const double error = r.prediction.samples_per_s / m.samples_per_s - 1;
    errors.push_back(std::abs(error));
    std::cout << fmt::format("{:>4}  {:<10} {:<34} {:>10.1f} {:>10.1f} {:>+7.1f}%\n", i + 1, r.plan.strategy,
                             r.plan.degrees(), r.prediction.samples_per_s, m.samples_per_s, 100 * error)
              << std::flush;
  }
  if (!errors.empty()) {
    std::sort(errors.begin(), errors.end());
    std::cout << fmt::format("median |error| {:.1f}%, worst {:.1f}% (error = predicted / measured - 1)\n",
                             100 * errors[errors.size() / 2], 100 * errors.back());
  }
  return failed == 0 ? 0 : 1;
}

int run_plan(PlanCommand& cmd) {
  if (!cmd.config_file.empty()) cmd.options.load_toml(cmd.config_file);
  train::TrainConfig& c = cmd.config;
  log::set_level(log::parse_level(c.log_level));
  LOOM_CHECK(c.strategy == "single" || !cmd.options.given_on_command_line("strategy"), ConfigError,
             "loom plan chooses the strategy: drop --strategy {} (use --strategies LIST to limit the choice)",
             c.strategy);
  cmd.inputs.max_processes = processes_available(cmd);
  cmd.inputs.profile_file = c.plan_profile;
  cmd.inputs.cluster_file = c.plan_cluster;
  train::validate(train::as_single_process(c));  // the job as one process: the plan chooses the rest
  LOOM_CHECK(cmd.inputs.profile_repeats >= 1, ConfigError, "--profile-repeats must be at least 1, got {}",
             cmd.inputs.profile_repeats);
  LOOM_CHECK(cmd.verify >= 0 && cmd.verify_steps >= 2, ConfigError,
             "--verify ({}) must be >= 0 and --verify-steps ({}) >= 2", cmd.verify, cmd.verify_steps);
  // Per strategy, the user's flags it uses, without those the plan sets and those of the
  // run's length and outputs.
  plan::BaseArgs base;
  for (const char* s : {"single", "allreduce", "ps", "pipeline", "hybrid"}) {
    std::vector<std::string> except = flags_a_plan_sets();
    for (const auto& f : run_length_and_output_flags()) except.push_back(f);
    for (const auto& f : train::flags_unused_by(c, s)) except.push_back(f);
    base[s] = cmd.options.given_args(except);
    if (!cmd.config_file.empty()) base[s].insert(base[s].begin(), {"--config", cmd.config_file});
  }
  if (!cmd.no_anchor && !file_sets_strategy_flags(c, cmd.options)) {
    cmd.inputs.anchor_args = base["single"];
    cmd.inputs.anchor_args.insert(cmd.inputs.anchor_args.end(), {"--strategy", "single"});
  }
  if (cmd.profile_only) {
    const plan::ModelProfile profile =
        measure_profile(c, cmd.inputs.max_processes, cmd.inputs.profile_repeats, cmd.inputs.anchor_args);
    write_output(cmd, profile.to_json() + "\n");
    return 0;
  }
  const Planned planned = plan_job(c, cmd.inputs);
  if (cmd.json) {
    write_output(cmd, plan::to_json(planned.ranked, planned.job, base) + "\n");
  } else {
    std::string text = plan::table(planned.ranked, planned.job, planned.profile, planned.cluster, cmd.top);
    const auto& best = planned.ranked.front();
    std::vector<std::string> command{"loom", "train"};
    std::vector<std::string> except = flags_a_plan_sets();
    for (const auto& f : train::flags_unused_by(c, best.plan.strategy)) except.push_back(f);
    for (const auto& a : plan::train_args(best, planned.job, cmd.options.given_args(except))) {
      command.push_back(a);
    }
    if (!cmd.config_file.empty()) command.insert(command.begin() + 2, {"--config", cmd.config_file});
    text += fmt::format("\nbest plan{}:\n  {}\n", best.prediction.fits ? "" : " (it does NOT fit memory)",
                        plan::shell_join(command));
    write_output(cmd, text);
  }
  return cmd.verify > 0 ? verify(cmd, planned, base) : 0;
}

}  // namespace

Command add_plan_command(CLI::App& app) {
  auto cmd = std::make_shared<PlanCommand>();
  CLI::App* sub = app.add_subcommand(
      "plan", "choose the strategy and its degrees: predicted samples/s, step time and memory of every plan, ranked");
  sub->add_option("--config", cmd->config_file, "TOML file of settings; keys are the flag names")
      ->check(CLI::ExistingFile);
  sub->add_flag("--profile-only", cmd->profile_only,
                "measure the model per layer (forward, backward, bytes) at the batch sizes a plan can use, and stop");
  sub->add_flag("--calibrate", cmd->inputs.calibrate,
                "measure this machine (collectives, links, parameter server, core contention) first");
  sub->add_option("--save-cluster", cmd->inputs.save_cluster, "--calibrate: write the measured cluster file here");
  sub->add_option("--strategies", cmd->inputs.strategies,
                  "consider only these, e.g. allreduce,pipeline (default: single,allreduce,ps,pipeline,hybrid)");
  sub->add_flag("--json", cmd->json, "print every plan as a JSON array, best first");
  sub->add_option("--top", cmd->top, "rows of the table")->capture_default_str();
  sub->add_option("--verify", cmd->verify, "run the best K plans that fit and print predicted against measured")
      ->capture_default_str();
  sub->add_option("--verify-steps", cmd->verify_steps, "--verify: steps per run")->capture_default_str();
  sub->add_option("--out", cmd->out, "write the table, the JSON or the profile here (default: standard output)");
  sub->add_flag("--no-anchor", cmd->no_anchor,
                "do not scale the measured profile to a short real one-process run of the job (faster, less exact)");
  sub->add_option("--profile-repeats", cmd->inputs.profile_repeats, "timed runs per layer and batch size (median)")
      ->capture_default_str();
  train::register_train_options(cmd->options, cmd->config);
  cmd->options.add_to(*sub);
  return {sub, [cmd] { return run_plan(*cmd); }};
}

}  // namespace loom::cli
