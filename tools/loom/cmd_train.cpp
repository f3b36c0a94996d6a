// `loom train`: flags and --config file -> TrainConfig -> Trainer. With --nproc N > 1 and
// no job environment, it re-executes itself N times under the launcher (as `loom run`
// would) and supervises them.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <thread>

#include "commands.h"
#include "job_environment.h"
#include "loom/comm/context.h"
#include "loom/core/dist_env.h"
#include "loom/core/error.h"
#include "loom/core/log.h"
#include "loom/core/options.h"
#include "loom/launch/launcher.h"
#include "loom/launch/self_executable.h"
#include "loom/plan/report.h"
#include "loom/ps/job_layout.h"
#include "loom/ps/van_options.h"
#include "loom/train/ps_server_process.h"
#include "loom/train/strategy_options.h"
#include "loom/train/train_config.h"
#include "loom/train/trainer.h"
#include "planning.h"

namespace loom::cli {

namespace {

struct TrainCommand {
  train::TrainConfig config;
  OptionTable options;
  std::string config_file;
  std::vector<std::string> argv;
};

// A job whose parameter servers listen off loopback gets its own CURVE key pair, made
// here by the process that starts it and handed to its processes in the environment
// (never on a command line, never logged), unless the environment already holds one or
// --insecure says not to. External servers (loom ps-server) need the user's key file.
void give_the_job_a_curve_key(const train::TrainConfig& c) {
  if (c.strategy != "ps" || c.insecure || c.ps_external_servers) return;
  if (ps::is_local_endpoint("tcp://" + c.ps_host + ":0")) return;
  if (std::getenv(ps::kCurveSecretEnv) || std::getenv(ps::kCurveKeyFileEnv)) return;
  const ps::CurveKeys keys = ps::CurveKeys::generate();
  LOOM_CHECK(::setenv(ps::kCurveSecretEnv, keys.secret_key.c_str(), 1) == 0, ConfigError,
             "cannot set {} for the job's processes", ps::kCurveSecretEnv);
  log::info("ps: --ps-host {} is not loopback: workers and servers authenticate and encrypt with a new CURVE key pair",
            c.ps_host);
}

int spawn_workers(const TrainCommand& cmd) {
  give_the_job_a_curve_key(cmd.config);
  launch::LaunchOptions lo;
  // --strategy ps: the parameter servers are the last --servers ranks of the job.
  lo.nproc = cmd.config.strategy == "ps"
                 ? ps::job_size(cmd.config.nproc, static_cast<int>(cmd.config.servers), cmd.config.ps_external_servers)
                 : cmd.config.nproc;
  lo.command = cmd.argv;
  lo.max_restarts = cmd.config.max_restarts;  // restarted workers resume from --checkpoint-dir
  if (cmd.config.strategy == "ps" && cmd.config.consistency != "sync") {
    // Asynchronous workers other than worker 0 (which hosts the rendezvous store and
    // writes the model) may die: the servers drop them and the others train on.
    lo.may_fail = [workers = cmd.config.nproc](int rank) { return rank > 0 && rank < workers; };
  }
  lo.command[0] = launch::self_executable();
  return launch::run(lo);
}

// --strategy auto, in the process that starts the job: plans (plan_job: the profile and
// the cluster measured quickly, or read from --profile / --cluster), takes the best plan
// that fits and trains as one process would, says why in one line, and rewrites the
// config and the command line the workers are started with.
void choose_strategy(TrainCommand& cmd) {
  train::TrainConfig& c = cmd.config;
  PlanInputs in;
  in.profile_file = c.plan_profile;
  in.cluster_file = c.plan_cluster;
  in.calibrate = c.plan_cluster.empty();
  in.calibrate_budget_s = 4;
  in.profile_repeats = 3;
  std::vector<std::string> except = flags_a_plan_sets();
  for (const auto& f : run_length_and_output_flags()) except.push_back(f);
  for (const auto& f : train::flags_unused_by(c, "single")) except.push_back(f);
  in.anchor_args = cmd.options.given_args(except);
  if (!cmd.config_file.empty()) in.anchor_args.insert(in.anchor_args.begin(), {"--config", cmd.config_file});
  in.anchor_args.insert(in.anchor_args.end(), {"--strategy", "single"});
  if (file_sets_strategy_flags(c, cmd.options)) in.anchor_args.clear();
  in.max_processes = cmd.options.given_on_command_line("nproc") || c.nproc > 1
                         ? c.nproc
                         : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  const train::TrainConfig one_process = train::as_single_process(c);
  train::validate(one_process);
  const Planned planned = plan_job(c, in);
  const plan::RankedPlan& chosen = choose_for_auto(planned);
  log::info("{}", why_chosen(planned, chosen));
  // The user's flags the chosen strategy does not use are dropped (with a warning).
  std::vector<std::string> drop = flags_a_plan_sets();
  for (const auto& f : train::flags_unused_by(c, chosen.plan.strategy)) {
    // Only the command line can be rewritten: the workers read --config FILE again.
    LOOM_CHECK(cmd.options.given_on_command_line(f), ConfigError,
               "--strategy auto chose {}, which does not use --{}, set in {}: remove it from the file (or give it "
               "on the command line, where auto can drop it)",
               chosen.plan.strategy, f, cmd.config_file);
    log::warn("--strategy auto chose {}, which does not use --{}: it is dropped", chosen.plan.strategy, f);
    drop.push_back(f);
  }
  apply_plan(chosen, planned.job, c);
  cmd.argv = replace_flags(cmd.argv, drop, plan::train_args(chosen, planned.job, {}),
                           [&cmd](const std::string& name) { return cmd.options.takes_value(name); });
}

int run_train(TrainCommand& cmd) {
  if (!cmd.config_file.empty()) cmd.options.load_toml(cmd.config_file);
  if (cmd.config.strategy == "auto") {
    LOOM_CHECK(DistEnv::from_environment().source == "none", ConfigError,
               "--strategy auto plans in the process that starts the job, not in a worker of one: run `loom plan` "
               "and start the job with the plan's flags");
    choose_strategy(cmd);
  }
  if (cmd.config.strategy == "hybrid" && cmd.config.nproc == 1 && !cmd.options.given_on_command_line("nproc")) {
    cmd.config.nproc = cmd.config.dp * cmd.config.pp;  // --nproc defaults to the mesh
  }
  const train::TrainConfig& c = cmd.config;
  log::set_level(log::parse_level(c.log_level));
  train::validate(c);

  DistEnv env = DistEnv::from_environment();
  const bool ps = c.strategy == "ps";
  if (env.source == "none" && (c.nproc > 1 || ps || c.max_restarts > 0)) {
    train::check_model_file(c);  // one line here rather than one per rank
    return spawn_workers(cmd);
  }
  if (env.restart_count > 0 && !c.checkpoint_dir.empty()) {
    cmd.config.resume_if_any = true;  // a restart continues from the newest checkpoint, if there is one
    log::info("restart {}: resuming from {} if it holds a checkpoint", env.restart_count, c.checkpoint_dir);
  }
  if (env.world_size > 1 || env.source != "none") log::set_rank(env.rank);
  if (ps) {
    // The job's last --servers ranks serve (unless the servers run on their own as
    // `loom ps-server`); the others are the workers' world.
    const ps::JobLayout layout = ps::job_layout(env.world_size, static_cast<int>(c.servers), c.ps_external_servers);
    if (const int server = layout.server_index(env.rank); server >= 0) {
      train::run_server_process(c, env, job_environment(env), layout.workers, server);
      return 0;
    }
    env.world_size = layout.workers;
  }
  LOOM_CHECK(c.nproc == 1 || c.nproc == env.world_size, ConfigError,
             "--nproc {} does not match the job's {} {} (from {})", c.nproc, ps ? "workers" : "world size",
             env.world_size, env.source);

  std::shared_ptr<comm::Context> context;
  if (c.strategy != "single") {
    comm::ContextOptions co;
    co.timeout = std::chrono::milliseconds(static_cast<int64_t>(c.timeout * 1000));
    co.interface = c.interface;
    co.always_host_store = ps;  // the servers find the workers through it
    co.shared_memory = shared_memory_allreduce_wanted();
    context = comm::Context::create(env, co);
  } else {
    LOOM_CHECK(env.world_size == 1, ConfigError,
               "--strategy single runs one process, but this job has {} (use --nproc 1)", env.world_size);
  }
  train::Trainer(c, context, job_environment(env)).run();
  return 0;
}

}  // namespace

Command add_train_command(CLI::App& app, const std::vector<std::string>& argv) {
  auto cmd = std::make_shared<TrainCommand>();
  cmd->argv = argv;
  CLI::App* sub = app.add_subcommand("train", "train a model (flags override --config)");
  sub->add_option("--config", cmd->config_file, "TOML file of settings; keys are the flag names")
      ->check(CLI::ExistingFile);
  train::register_train_options(cmd->options, cmd->config);
  cmd->options.add_to(*sub);
  return {sub, [cmd] { return run_train(*cmd); }};
}

}  // namespace loom::cli
