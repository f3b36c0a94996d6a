// `loom calibrate-rank` (hidden): one rank of `loom plan --calibrate`, started by
// plan::calibrate() under the launcher, which sets RANK / WORLD_SIZE / MASTER_ADDR /
// MASTER_PORT. Its flags are the ones plan::calibrate() passes (src/loom/plan/calibrate.cpp):
//
//   loom calibrate-rank --out DIR/measured.toml --threads 1 --budget 12 --max-repeats 9 --timeout 120
//                       [--bench-slowdown RANK:FACTOR]
#include <CLI/CLI.hpp>

#include <chrono>
#include <memory>
#include <string>

#include "commands.h"
#include "loom/core/dist_env.h"
#include "loom/core/error.h"
#include "loom/core/log.h"
#include "loom/plan/calibrate.h"

namespace loom::cli {

namespace {

struct CalibrateRankCommand {
  plan::CalibrateOptions options;
  std::string out;
  double timeout_s = 120;
};

int run_calibrate_rank(CalibrateRankCommand& cmd) {
  const DistEnv env = DistEnv::from_environment();
  log::set_rank(env.rank);
  // Rank 0 reports progress; the others speak only when something goes wrong.
  log::set_level(env.rank == 0 ? log::Level::info : log::Level::warn);
  LOOM_CHECK(cmd.timeout_s > 0, ConfigError, "--timeout must be positive, got {}", cmd.timeout_s);
  cmd.options.timeout = std::chrono::milliseconds(static_cast<int64_t>(cmd.timeout_s * 1000));
  plan::calibrate_rank(env, cmd.options, cmd.out);
  return 0;
}

}  // namespace

Command add_calibrate_rank_command(CLI::App& app) {
  auto cmd = std::make_shared<CalibrateRankCommand>();
  CLI::App* sub = app.add_subcommand("calibrate-rank", "one rank of loom plan --calibrate (internal)");
  sub->group("");  // hidden from --help
  sub->add_option("--out", cmd->out, "the file rank 0 writes")->required();
  sub->add_option("--threads", cmd->options.threads, "intra-op threads of each rank");
  sub->add_option("--budget", cmd->options.budget_s, "seconds for the measurements");
  sub->add_option("--max-repeats", cmd->options.max_repeats, "timed runs per point at most");
  sub->add_option("--timeout", cmd->timeout_s, "seconds any blocking step may take");
  sub->add_option("--bench-slowdown", cmd->options.bench_slowdown,
                  "BENCHMARK AID RANK:FACTOR: that rank's speed measurement computes FACTOR x slower");
  return {sub, [cmd] { return run_calibrate_rank(*cmd); }};
}

}  // namespace loom::cli
