// `loom run`: launches N local workers of a job with torchrun's environment, relays
// their output with a rank prefix, and fails fast, naming the rank, when one fails.
// A thin layer over loom::launch::run (include/loom/launch/launcher.h).
#include <chrono>
#include <cmath>  // llround
#include <memory>

#include "commands.h"
#include "loom/core/error.h"
#include "loom/launch/launcher.h"

namespace loom::cli {

Command add_run_command(CLI::App& app) {
  struct Flags {
    launch::LaunchOptions options;
    double stop_grace_s = 5.0;
    bool no_prefix = false;
  };
  auto flags = std::make_shared<Flags>();
  launch::LaunchOptions& o = flags->options;

  CLI::App* sub = app.add_subcommand(
      "run", "Launch local workers of a (multi-node) job: loom run --nproc N [flags] -- CMD ARGS...");
  sub->add_option("--nproc", o.nproc, "local workers to start on this node")->default_val(1);
  sub->add_option("--nnodes", o.nnodes, "nodes in the job, one `loom run` each")->default_val(1);
  sub->add_option("--node-rank", o.node_rank, "this node's rank, in [0, nnodes)")->default_val(0);
  sub->add_option("--master-addr", o.master_addr, "address of the node running global rank 0")
      ->default_val("127.0.0.1");
  sub->add_option("--master-port", o.master_port, "rendezvous port; 0 picks a free one (single node only)")
      ->default_val(0);
  sub->add_option("--max-restarts", o.max_restarts, "after a failure, restart all local workers up to this many times")
      ->default_val(0);
  sub->add_option("--stop-grace", flags->stop_grace_s, "seconds between SIGTERM and SIGKILL when stopping workers")
      ->default_val(5.0);
  sub->add_flag("--no-prefix", flags->no_prefix, "do not prefix worker output lines with \"[<rank>]: \"");
  sub->add_option("command", o.command, "the program to run and its arguments (after --)");

  return {sub, [flags] {
            launch::LaunchOptions options = flags->options;
            LOOM_CHECK(flags->stop_grace_s >= 0 && flags->stop_grace_s <= 3600, ConfigError,
                       "--stop-grace must be between 0 and 3600 seconds, got {}", flags->stop_grace_s);
            options.stop_grace = std::chrono::milliseconds(std::llround(flags->stop_grace_s * 1000));
            options.prefix_output = !flags->no_prefix;
            return launch::run(options);
          }};
}

}  // namespace loom::cli
