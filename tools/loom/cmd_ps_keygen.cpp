// `loom ps-keygen FILE`: a new CURVE key pair for one parameter-server job, written as
// FILE (mode 0600, never overwritten). Give every worker and server of the job
// LOOM_PS_CURVE_KEY_FILE=FILE (a copy on each machine); the key is never printed.
// `loom train --ps-host <not loopback>` makes one per job by itself when none is given.
#include <CLI/CLI.hpp>

#include <fmt/format.h>

#include <memory>

#include "commands.h"
#include "loom/ps/van_options.h"

namespace loom::cli {

Command add_ps_keygen_command(CLI::App& app) {
  auto path = std::make_shared<std::string>();
  CLI::App* sub = app.add_subcommand("ps-keygen", "write a new CURVE key pair for a parameter-server job (mode 0600)");
  sub->add_option("FILE", *path, "the key file to create (an existing file is an error)")->required();
  return {sub, [path] {
            ps::write_curve_key_file(*path);
            fmt::print(
                "loom ps-keygen: wrote a new key pair to {} (mode 0600); start every process of the job with "
                "{}={}\n",
                *path, ps::kCurveKeyFileEnv, *path);
            return 0;
          }};
}

}  // namespace loom::cli
