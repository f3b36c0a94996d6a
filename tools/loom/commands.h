// The `loom` CLI: one file per subcommand, each a thin layer over the library.
// Each add_*_command registers its subcommand and flags on `app` and returns a callable
// that runs it and returns the process exit code. Errors are thrown as loom::Error and
// turned into one line by main().
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace loom::cli {

struct Command {
  CLI::App* app;             // the registered subcommand
  std::function<int()> run;  // runs it after parsing; returns the exit code
};

// `argv` is the whole command line of this process (train re-executes itself with it
// to spawn --nproc workers).
Command add_train_command(CLI::App& app, const std::vector<std::string>& argv);
Command add_run_command(CLI::App& app);
Command add_partition_command(CLI::App& app);
Command add_ps_server_command(CLI::App& app);
Command add_ps_keygen_command(CLI::App& app);
Command add_plan_command(CLI::App& app);
Command add_calibrate_rank_command(CLI::App& app);  // hidden: one rank of plan --calibrate

}  // namespace loom::cli
