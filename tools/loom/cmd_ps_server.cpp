// `loom ps-server`: one parameter server on its own, for jobs whose servers run on other
// machines than (some of) the workers. It joins the job's rendezvous store at
// --master-addr:--master-port (hosted by worker 0), announces its endpoint there, and
// serves until the workers are done. The training flags (or the job's --config file)
// give it the optimizer and the consistency mode; they must match the workers'.
//
//   loom ps-server --index 0 --workers 2 --servers 1 --master-addr 10.0.0.1
//       --master-port 29500 --ps-host 10.0.0.2 --consistency sync --lr 0.05 ...
#include <CLI/CLI.hpp>

#include <cstdlib>
#include <memory>

#include "commands.h"
#include "job_environment.h"
#include "loom/core/dist_env.h"
#include "loom/core/error.h"
#include "loom/core/log.h"
#include "loom/core/options.h"
#include "loom/train/ps_server_process.h"
#include "loom/train/train_config.h"

namespace loom::cli {

namespace {

struct PsServerCommand {
  train::TrainConfig config;
  OptionTable options;
  std::string config_file;
  int index = 0;
  int workers = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
};

int run_ps_server(PsServerCommand& cmd) {
  if (!cmd.config_file.empty()) cmd.options.load_toml(cmd.config_file);
  log::set_level(log::parse_level(cmd.config.log_level));
  // A server is part of a --strategy ps job, whether or not its flags say so.
  LOOM_CHECK(cmd.config.strategy == "ps" || !cmd.options.given_on_command_line("strategy"), ConfigError,
             "loom ps-server serves a --strategy ps job, not --strategy {}", cmd.config.strategy);
  cmd.config.strategy = "ps";
  train::validate(cmd.config);
  LOOM_CHECK(cmd.workers >= 1, ConfigError, "--workers must be at least 1, got {}", cmd.workers);
  LOOM_CHECK(cmd.master_port > 0 && cmd.master_port < 65536, ConfigError, "--master-port {} is not a port",
             cmd.master_port);
  DistEnv env;
  env.source = "ps-server";
  env.rank = cmd.workers + cmd.index;
  env.world_size = cmd.workers + static_cast<int>(cmd.config.servers);
  env.master_addr = cmd.master_addr;
  env.master_port = cmd.master_port;
  log::set_rank(env.rank);
  if (const char* restarts = std::getenv("LOOM_RESTART_COUNT")) env.restart_count = std::atoi(restarts);
  train::run_server_process(cmd.config, env, job_environment(env), cmd.workers, cmd.index);
  return 0;
}

}  // namespace

Command add_ps_server_command(CLI::App& app) {
  auto cmd = std::make_shared<PsServerCommand>();
  CLI::App* sub = app.add_subcommand("ps-server", "run one parameter server of a --strategy ps job on its own");
  sub->add_option("--config", cmd->config_file, "TOML file of the job's settings")->check(CLI::ExistingFile);
  sub->add_option("--index", cmd->index, "this server's index, 0..--servers-1")->required();
  sub->add_option("--workers", cmd->workers, "number of workers in the job")->required();
  sub->add_option("--master-addr", cmd->master_addr, "address of worker 0 (the rendezvous store)");
  sub->add_option("--master-port", cmd->master_port, "port of the rendezvous store");
  train::register_train_options(cmd->options, cmd->config);
  cmd->options.add_to(*sub);
  return {sub, [cmd] { return run_ps_server(*cmd); }};
}

}  // namespace loom::cli
