#include "loom/launch/launch_options.h"

#include "loom/core/error.h"

namespace loom::launch {

void validate(const LaunchOptions& o) {
  LOOM_CHECK(o.nproc >= 1, ConfigError, "--nproc must be at least 1, got {}", o.nproc);
  LOOM_CHECK(o.nnodes >= 1, ConfigError, "--nnodes must be at least 1, got {}", o.nnodes);
  LOOM_CHECK(o.node_rank >= 0 && o.node_rank < o.nnodes, ConfigError,
             "--node-rank must be in [0, {}) for --nnodes {}, got {}", o.nnodes, o.nnodes, o.node_rank);
  LOOM_CHECK(!o.master_addr.empty(), ConfigError, "--master-addr must not be empty");
  LOOM_CHECK(o.master_port >= 0 && o.master_port <= 65535, ConfigError,
             "--master-port must be in [1, 65535] (or 0 to pick a free port), got {}", o.master_port);
  LOOM_CHECK(o.master_port != 0 || o.nnodes == 1, ConfigError,
             "--master-port is required when --nnodes is {}: every node must use the same port", o.nnodes);
  LOOM_CHECK(o.max_restarts >= 0, ConfigError, "--max-restarts must not be negative, got {}", o.max_restarts);
  LOOM_CHECK(o.stop_grace.count() >= 0, ConfigError, "--stop-grace must not be negative");
  LOOM_CHECK(!o.command.empty() && !o.command.front().empty(), ConfigError,
             "no command to launch: give it after '--', e.g. loom run --nproc 2 -- ./my_program");
  LOOM_CHECK(o.stdout_fd >= 0 && o.stderr_fd >= 0, ConfigError,
             "launch: output descriptors must be valid, got {} and {}", o.stdout_fd, o.stderr_fd);
}

}  // namespace loom::launch
