// loom: distributed training for the PyTorch C++ frontend.
//   loom train [--config FILE.toml] [flags]
//   loom run --nproc N [...] -- CMD ARGS...
//   loom ps-server --index I --workers W [...]
//   loom ps-keygen FILE
//   loom plan --profile-only [train flags] [--out FILE]
#include <c10/util/Exception.h>

#include <CLI/CLI.hpp>

#include <iostream>
#include <string>
#include <vector>

#include "commands.h"
#include "loom/core/dist_env.h"
#include "loom/core/error.h"
#include "loom/core/log.h"

int main(int argc, char** argv) {
  loom::init_process();
  CLI::App app{"loom: distributed training for the PyTorch C++ frontend (libtorch)", "loom"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "loom 0.1.0");
  const std::vector<std::string> args(argv, argv + argc);
  const std::vector<loom::cli::Command> commands = {
      loom::cli::add_train_command(app, args),    loom::cli::add_run_command(app),
      loom::cli::add_partition_command(app),      loom::cli::add_ps_server_command(app),
      loom::cli::add_ps_keygen_command(app),      loom::cli::add_plan_command(app),
      loom::cli::add_calibrate_rank_command(app),
  };
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version print and exit 0; a bad flag gets CLI11's one-line message.
    if (e.get_exit_code() == 0) return app.exit(e);
    loom::log::error_line(fmt::format("config error: {}", e.what()));
    return 2;
  }
  try {
    for (const auto& command : commands) {
      if (command.app->parsed()) return command.run();
    }
    return 2;
  } catch (const loom::Error& e) {
    loom::log::error_line(fmt::format("{}: {}", e.kind(), e.what()), e.location());
    return 1;
  } catch (const c10::Error& e) {
    // libtorch's own errors (e.g. the allocator's "can't allocate memory") carry a C++
    // backtrace after the message: one line, without it.
    const std::string text = e.what_without_backtrace();
    loom::log::error_line(fmt::format("error: {}", text.substr(0, text.find('\n'))));
    return 1;
  } catch (const std::exception& e) {
    loom::log::error_line(fmt::format("error: {}", e.what()));
    return 1;
  }
}
