// `loom partition`: prints where every sample goes, using the trainer's own Partitioner.
//   {"scheme":..,"world_size":..,"num_samples":..,"batch_size":..,"epoch":..,"seed":..,
//    "steps_per_epoch":..,"ranks":[{"rank":0,"steps":[[...],[...]]}, ...]}
#include <CLI/CLI.hpp>

#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "loom/core/error.h"
#include "loom/data/partitioner.h"

namespace loom::cli {

namespace {

struct PartitionCommand {
  data::PartitionOptions options;
  std::string scheme = "strided";
  std::string weights;
  int64_t epoch = 0;
  int64_t steps = -1;  // -1: every step of the epoch
  int64_t seed = 0;
};

int run_partition(PartitionCommand& cmd) {
  LOOM_CHECK(cmd.seed >= 0, ConfigError, "--seed must not be negative, got {}", cmd.seed);
  LOOM_CHECK(cmd.epoch >= 0, ConfigError, "--epoch must not be negative, got {}", cmd.epoch);
  cmd.options.scheme = data::parse_scheme(cmd.scheme, "scheme");
  cmd.options.seed = static_cast<uint64_t>(cmd.seed);
  cmd.options.weights = data::parse_weights(cmd.weights);
  auto partitioner = data::make_partitioner(cmd.options);
  const int64_t per_epoch = partitioner->steps_per_epoch();
  LOOM_CHECK(cmd.steps >= -1, ConfigError, "--steps must not be negative, got {}", cmd.steps);
  const int64_t steps = cmd.steps < 0 ? per_epoch : std::min(cmd.steps, per_epoch);
  nlohmann::json ranks = nlohmann::json::array();
  for (int r = 0; r < cmd.options.world_size; ++r) {
    nlohmann::json per_step = nlohmann::json::array();
    for (int64_t t = 0; t < steps; ++t) per_step.push_back(partitioner->indices(r, cmd.epoch, t));
    ranks.push_back({{"rank", r}, {"steps", std::move(per_step)}});
  }
  const nlohmann::json out = {{"scheme", data::scheme_name(cmd.options.scheme)},
                              {"world_size", cmd.options.world_size},
                              {"num_samples", cmd.options.num_samples},
                              {"batch_size", cmd.options.batch_size},
                              {"epoch", cmd.epoch},
                              {"seed", cmd.seed},
                              {"drop_last", cmd.options.drop_last},
                              {"steps_per_epoch", per_epoch},
                              {"ranks", std::move(ranks)}};
  std::cout << out.dump() << std::endl;
  return 0;
}

}  // namespace

Command add_partition_command(CLI::App& app) {
  auto cmd = std::make_shared<PartitionCommand>();
  auto* sub = app.add_subcommand("partition", "print, as JSON, the sample indices each rank gets at each step");
  sub->add_option("--scheme", cmd->scheme, "strided | random | proportional")->capture_default_str();
  sub->add_option("--world-size", cmd->options.world_size, "data-parallel workers")->required();
  sub->add_option("--shard-weights", cmd->weights, "proportional: one weight per worker, e.g. 3,1,1");
  sub->add_option("--num-samples", cmd->options.num_samples, "training set size")->required();
  sub->add_option("--batch-size", cmd->options.batch_size, "GLOBAL batch per step")->required();
  sub->add_option("--epoch", cmd->epoch, "epoch to show (0-based)")->capture_default_str();
  sub->add_option("--seed", cmd->seed, "the training seed")->capture_default_str();
  sub->add_option("--steps", cmd->steps, "show only the first K steps");
  sub->add_flag("--drop-last,!--no-drop-last", cmd->options.drop_last,
                "skip samples that do not fill a whole step (default on)");
  return {sub, [cmd] { return run_partition(*cmd); }};
}

}  // namespace loom::cli
