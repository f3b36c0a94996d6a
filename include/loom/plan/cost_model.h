// The planner's cost model (issue 18, docs/planner.md "The cost model"): for one
// configuration of `loom train` (a Plan), the step time, samples/s and peak memory per
// worker it predicts from a measured model profile (plan/profile.h) and a cluster
// (plan/cluster.h). Every term is a formula over measured inputs; the assumptions are
// stated where they are made (cost_model.cpp) and in docs/planner.md.
//
//   const auto plans = loom::plan::candidates(job, profile, cluster);
//   for (const auto& p : plans) {
//     const auto r = loom::plan::predict(p, job, profile, cluster);
//     // r.samples_per_s, r.step_s, r.memory_bytes, r.fits, r.dominant
//   }
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "loom/plan/cluster.h"
#include "loom/plan/profile.h"

namespace loom::plan {

// What the user fixed: the job every plan must run (a subset of `loom train`'s flags).
struct Job {
  int64_t batch_size = 64;  // global batch per step
  int threads = 1;          // intra-op threads per process
  double bucket_mb = 25;    // allreduce bucket cap
  int64_t staleness = 2;    // ssp
  int max_processes = 1;    // --nproc, or the cluster's processes
  // Strategies to consider ("single", "allreduce", "ps", "pipeline", "hybrid"); empty: all.
  std::vector<std::string> strategies;
};

// One configuration of `loom train`: a strategy and its degrees.
struct Plan {
  std::string strategy = "single";  // single | allreduce | ps | pipeline | hybrid
  int workers = 1;                  // allreduce, ps: data-parallel workers; hybrid: --dp
  int servers = 0;                  // ps
  std::string consistency;          // ps: sync | async | ssp
  int zero = 0;                     // allreduce: ZeRO stage 0, 1, 2
  int stages = 1;                   // pipeline, hybrid: --pp
  int64_t micro_batches = 1;        // pipeline, hybrid
  std::string schedule;             // pipeline, hybrid: gpipe | 1f1b
  std::vector<int64_t> split;       // pipeline, hybrid: layers per stage
  bool shard_weights_auto = false;  // allreduce: --shard-weights auto

  static Plan allreduce(int workers, int zero = 0);
  static Plan ps(int workers, int servers, const std::string& consistency);
  static Plan pipeline(int stages, int64_t micro_batches, const std::string& schedule, std::vector<int64_t> split);

  // Processes the plan starts: workers (+ servers), stages, dp * pp.
  int processes() const;
  // The `loom train` arguments that run this plan (strategy, degrees, every flag the
  // plan sets), e.g. {"--strategy", "allreduce", "--nproc", "4", "--zero", "1"}.
  std::vector<std::string> args(const Job& job) const;
  // Short description of the degrees: "N=4 zero=1", "P=4 M=8 1f1b split=3,3,3,3".
  std::string degrees() const;
};

struct Prediction {
  double step_s = 0;
  double samples_per_s = 0;
  // Per-step parts (seconds; they need not add up to step_s where they overlap):
  double compute_s = 0;        // forward + backward + optimizer, slowed by contention and process speed
  double communication_s = 0;  // exposed: not hidden behind backward
  double bubble_s = 0;         // pipeline idle time on the slowest stage
  double server_s = 0;         // ps: waiting for servers beyond the network
  double framework_s = 0;      // loom's own per-step cost, measured (plan/overhead.h)
  double slowdown = 1;         // compute slowdown from processes sharing cores
  std::string dominant;        // "compute" | "communication" | "bubble" | "server" | "loom's per-step cost"
  // Peak memory of the largest worker (bytes): base + parameters + gradients +
  // optimizer state + activations + communication buffers.
  int64_t memory_bytes = 0;
  bool fits = true;  // memory_bytes <= the memory one process may use
  std::string note;  // e.g. "asynchronous: not equivalent to single-process training"
};

// Every plan of `job` with at most job.max_processes processes (<= the cluster's), for a
// model of `layers` layers: single; allreduce N = 2.. with ZeRO 0, 1, 2 (and with
// --shard-weights auto when the cluster's process speeds differ); ps W workers x
// S servers, sync and async; pipeline P = 2..min(layers, max) with M in {P, 2P, 4P} and
// both schedules, split balanced by the profile's time at the micro-batch; hybrid
// dp x pp likewise. Filtered by job.strategies.
std::vector<Plan> candidates(const Job& job, const ModelProfile& profile, const Cluster& cluster);

Prediction predict(const Plan& plan, const Job& job, const ModelProfile& profile, const Cluster& cluster);

// A plan with its prediction; rank() sorts plans that fit first, then by samples/s.
struct RankedPlan {
  Plan plan;
  Prediction prediction;
};
std::vector<RankedPlan> rank(const Job& job, const ModelProfile& profile, const Cluster& cluster);

}  // namespace loom::plan
