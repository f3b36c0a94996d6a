// loom's own per-step cost, measured (issue 18, docs/planner.md "Framework overhead"):
// what a step of each strategy costs beyond what the cost model computes from the
// profile and the collectives, found by running the real `loom train` on a model of next
// to no compute (deep-mlp, width 8, depth 2 and 16: 4 and 32 parameter tensors,
// synthetic data, 16 rows per worker or micro-batch) and taking the
// cost model's residual on it: measured step - predicted step. It holds the trainer's
// own work per step (batch assembly, loss read-back, logging), the reducer's hooks and
// copies, the pipeline's per-message handshakes, the servers' request handling, and the
// scheduling delays of processes that wait for one another on shared cores.
//
// measure_overheads() runs, through plan::measure (verify.h): single; allreduce N = 2 ..
// max; ps with W workers and 1 server (W = 1 .. max-1) and 2 x 2 when max >= 4;
// pipeline P = 2 with M = 2 and 4 (and P = max, M = max). Each for `steps` steps; the
// steady-state rate after a quarter of them. All but the pipelines run on both tiny
// models: the cost model takes their cost as linear in the parameter tensors.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "loom/plan/cluster.h"

namespace loom::plan {

struct OverheadOptions {
  std::string loom;  // the `loom` executable (launch::self_executable() in the CLI)
  int max_processes = 4;
  int threads = 1;
  int64_t steps = 120;
  double timeout_s = 120;  // per run
};

// Fills cluster.overheads (replacing what was there) from real runs on this machine;
// the cluster's other tables must already be measured (calibrate()): the residual is
// taken against the cost model with them. Throws LaunchError when a run cannot start;
// a run that fails is a ConfigError naming it.
void measure_overheads(const OverheadOptions& options, Cluster& cluster);

}  // namespace loom::plan
