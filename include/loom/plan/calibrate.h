// Calibration (issue 18, docs/planner.md): measures THIS machine with real processes and
// returns the cluster file the planner's cost model reads (cluster.h), with its measured
// tables filled in.
//
// calibrate() starts `processes` copies of the loom executable (`loom calibrate-rank`,
// a hidden subcommand that calls calibrate_rank()) under the launcher, once, and reads
// what rank 0 wrote to a file in a temporary directory. In that one job:
//   - contention: k = 1..processes ranks at once run a fixed 256x256 float matmul loop
//     on one thread each (~0.1 s alone), twice over k; contention[k-1] = the busy ranks'
//     median time / the median time of one alone (1 for k = 1, never below 1).
//   - process_speeds: each rank alone, one after another, runs the same loop, 3 rounds (a
//     rank named by `bench_slowdown` stretched as `loom train --bench-slowdown` stretches
//     its compute; alone, so the contention table is not counted twice);
//     speed = the fastest rank's median time / this rank's, written as 1 when within
//     Cluster::kSpeedTolerance of the fastest. Outside budget_s: processes x 3 x ~0.1 s
//     (times FACTOR for the stretched rank).
//   - process_base_bytes: rank 0's VmRSS once libtorch and both contexts are up.
//   - intra link: ping-pong between ranks 0 and 1 through Gloo's send/recv over TCP (as
//     parameter-server messages, and pipeline stages on several machines, travel):
//     latency = half the median round trip of 4 bytes; bandwidth = 16 MiB / (half the
//     median round trip of 16 MiB - latency). inter = intra.
//   - intra_shm link: the same through the shared-memory rings (as pipeline stages on
//     one machine talk), with 2 MiB for the bandwidth (a ring takes it whole); left out
//     when the rings did not carry every message (shared memory unavailable).
//   - allreduce and reduce-scatter + all-gather (equal counts) through comm::Group, on
//     shared memory (ContextOptions::shared_memory) and on TCP (a second Context with it
//     off), over the first n ranks for n = 2..processes, 4 KiB .. 64 MiB of float32:
//     the median time on rank 0 from a barrier to the work's end.
//   - ps: one sync push + pull round of 4 KiB, 1 MiB and 4 MiB through the real
//     ps::Server / ps::Worker, W workers and S servers: (W, 1) for W = 1..processes-1
//     and (processes-2, 2) when processes >= 4; median over rounds on worker 0.
// Repeats are cut to fit `budget_s` (the first timed run of each point decides how many
// more fit its share, at least 1, at most `max_repeats`); the whole takes about
// budget_s plus start-up (~1 s per process on 2 cores). cores_per_node,
// memory_per_node_bytes and the name come from Cluster::this_machine(processes).
//
// Progress is logged (log::info) by the calling process and by rank 0.
// Not thread-safe: calibrate() runs the launcher (launcher.h: one launch per process).
#pragma once

#include <chrono>
#include <string>

#include "loom/core/dist_env.h"
#include "loom/plan/cluster.h"

namespace loom::plan {

struct CalibrateOptions {
  int processes = 4;    // the largest world measured (>= 2)
  int threads = 1;      // intra-op threads of each rank (the contention kernel always uses 1)
  double budget_s = 8;  // time for the measurements, start-up excluded
  int max_repeats = 9;  // timed runs per point at most (after one warm-up)
  std::string self;     // the loom executable (launch::self_executable() in the CLI)
  // BENCHMARK AID "RANK:FACTOR" (as `loom train --bench-slowdown`): that rank's speed
  // measurement computes FACTOR times slower, standing in for a slower machine.
  std::string bench_slowdown;
  // Every blocking step of a rank (rendezvous, collectives, ps replies).
  std::chrono::milliseconds timeout{std::chrono::seconds(120)};
};

// Measures this machine as described above. Throws ConfigError on bad options, LaunchError
// when a rank fails (naming it and its cause), DataError when rank 0's file is unreadable.
Cluster calibrate(const CalibrateOptions& options);

// One rank of calibrate()'s job: `env` from the environment the launcher set
// (env.world_size = the processes measured), `out` the file rank 0 writes atomically
// (a cluster file holding the measured tables, process_base_bytes and the intra link;
// other ranks write nothing). options.processes and options.self are not used.
void calibrate_rank(const DistEnv& env, const CalibrateOptions& options, const std::string& out);

}  // namespace loom::plan
