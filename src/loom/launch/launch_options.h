// LaunchOptions: what the launcher starts and how it supervises it. Shared by
// `loom run` and `loom train --nproc N`; the flag names in error messages are theirs.
#pragma once

#include <unistd.h>

#include <chrono>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace loom::launch {

struct LaunchOptions {
  int nproc = 1;                          // --nproc: local workers on this node
  int nnodes = 1;                         // --nnodes: nodes in the job, each running one launcher
  int node_rank = 0;                      // --node-rank: this node, in [0, nnodes)
  std::string master_addr = "127.0.0.1";  // --master-addr: host of global rank 0
  // --master-port: the rendezvous port; 0 picks a free local port per attempt (only
  // valid when nnodes == 1: every node of a multi-node job must use the same port).
  int master_port = 0;
  // --max-restarts: after a failure, stop all local workers and start them all again, up
  // to this many times. Restarts are per node: other nodes' launchers are not told, so a
  // multi-node job restarts only where the peers fail too (e.g. on a timeout).
  int max_restarts = 0;
  // Stopping: SIGTERM to each worker's process group, SIGKILL after this grace period.
  std::chrono::milliseconds stop_grace{5000};
  // Prefix each line of worker output with "[<global rank>]: " (through pipes). When
  // false, workers write directly to the launcher's stdout/stderr.
  bool prefix_output = true;
  // Where prefixed worker output goes (tests redirect these; the CLI keeps the defaults).
  int stdout_fd = STDOUT_FILENO;
  int stderr_fd = STDERR_FILENO;
  // The program and its arguments; argv[0] is looked up in PATH unless it has a '/'.
  std::vector<std::string> command;
  // Extra environment per worker, called with the global rank on every (re)start;
  // applied after the launcher's own variables (see worker_env.h), so it may override them.
  std::function<std::vector<std::pair<std::string, std::string>>(int rank)> extra_env;

  // Ranks whose failure does not stop the others (e.g. the workers of an asynchronous
  // parameter-server job, which the servers drop and train without). Their failure is
  // logged; the job succeeds if every other rank does. Empty: any failure stops all.
  std::function<bool(int rank)> may_fail;

  int world_size() const { return nnodes * nproc; }
  int global_rank(int local_rank) const { return node_rank * nproc + local_rank; }
};

// Throws ConfigError, naming the flag, when the options cannot describe a job:
// nproc < 1, nnodes < 1, node_rank outside [0, nnodes), master_port outside [0, 65535]
// or 0 with nnodes > 1, empty master_addr, max_restarts < 0, negative stop_grace, empty
// command.
void validate(const LaunchOptions& options);

}  // namespace loom::launch
