// The environment of one launched worker: torchrun's names plus loom's own.
//
// Contract (DESIGN.md "Environment"): RANK = node_rank * nproc + local_rank,
// WORLD_SIZE = nnodes * nproc, LOCAL_RANK, LOCAL_WORLD_SIZE = nproc, GROUP_RANK and
// NODE_RANK = node_rank, GROUP_WORLD_SIZE = nnodes, MASTER_ADDR, MASTER_PORT,
// LOOM_RESTART_COUNT (0 on the first attempt), LOOM_MAX_RESTARTS, LOOM_LAUNCHED=1.
// LaunchOptions::extra_env is applied last and may override any of them.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "loom/launch/launch_options.h"

namespace loom::launch {

using EnvVars = std::vector<std::pair<std::string, std::string>>;

struct WorkerIdentity {
  int local_rank = 0;
  int master_port = 0;    // the port actually used (after picking a free one)
  int restart_count = 0;  // attempt number, 0 first
};

// The variables the launcher sets for one worker (not the inherited environment).
EnvVars worker_env(const LaunchOptions& options, const WorkerIdentity& worker);

// `base` ("NAME=value" strings, e.g. from environ) with `overrides` applied: a name in
// `overrides` replaces the entry of `base`, new names are appended, later overrides win.
std::vector<std::string> merge_environment(const std::vector<std::string>& base, const EnvVars& overrides);

// The current process environment as "NAME=value" strings.
std::vector<std::string> current_environment();

}  // namespace loom::launch
