// `loom train`: flags and --config file -> TrainConfig -> Trainer. With --nproc N > 1 and
// no job environment, it re-executes itself N times under the launcher (as `loom run`
// would) and supervises them.
#include <CLI/CLI.hpp>

#include <memory>

#include "commands.h"
#include "loom/comm/context.h"
#include "loom/core/dist_env.h"
#include "loom/core/error.h"
#include "loom/core/log.h"
#include "loom/core/options.h"
#include "loom/launch/launcher.h"
#include "loom/launch/self_executable.h"
#include "loom/train/train_config.h"
#include "loom/train/trainer.h"

namespace loom::cli {

namespace {

struct TrainCommand {
  train::TrainConfig config;
  OptionTable options;
  std::string config_file;
  std::vector<std::string> argv;
};

int spawn_workers(const TrainCommand& cmd) {
  launch::LaunchOptions lo;
  lo.nproc = cmd.config.nproc;
  lo.command = cmd.argv;
  lo.command[0] = launch::self_executable();
  return launch::run(lo);
}

int run_train(TrainCommand& cmd) {
  if (!cmd.config_file.empty()) cmd.options.load_toml(cmd.config_file);
  const train::TrainConfig& c = cmd.config;
  log::set_level(log::parse_level(c.log_level));
  train::validate(c);

  const DistEnv env = DistEnv::from_environment();
  if (env.source == "none" && c.nproc > 1) return spawn_workers(cmd);
  LOOM_CHECK(c.nproc == 1 || c.nproc == env.world_size, ConfigError,
             "--nproc {} does not match the job's world size {} (from {})", c.nproc, env.world_size, env.source);
  if (env.world_size > 1 || env.source != "none") log::set_rank(env.rank);

  std::shared_ptr<comm::Context> context;
  if (c.strategy != "single") {
    comm::ContextOptions co;
    co.timeout = std::chrono::milliseconds(static_cast<int64_t>(c.timeout * 1000));
    co.interface = c.interface;
    context = comm::Context::create(env, co);
  } else {
    LOOM_CHECK(env.world_size == 1, ConfigError,
               "--strategy single runs one process, but this job has {} (use --nproc 1)", env.world_size);
  }
  train::Trainer(c, context).run();
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
