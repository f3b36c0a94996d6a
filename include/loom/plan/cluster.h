// The planner's description of the machines a job may run on (issue 18, docs/planner.md):
// how many nodes, processes, cores and bytes of memory, how fast processes talk within a
// node and between nodes, and, when `loom plan --calibrate` measured this machine, the
// measured tables the cost model prefers to its formulas.
//
// A cluster file is TOML, written by --calibrate or by hand for machines loom cannot
// measure:
//
//   [cluster]
//   name = "horovod-2018"          # free text, shown in the plan's header
//   nodes = 128
//   processes_per_node = 4         # processes loom may start on one node
//   cores_per_node = 4             # cores they share (compute slows down beyond this)
//   memory_per_node_gib = 256      # memory they share
//   process_base_mib = 0           # a worker's memory before its model (libtorch, data)
//   process_speeds = [1.0, 0.5]    # optional: each process's compute speed, in rank order
//                                  # (1 = the fastest, as profiled; not listed: 1). Measured by
//                                  # --calibrate; differing speeds make `--shard-weights auto`
//                                  # a candidate
//
//   [links.intra]                  # between processes of one node
//   latency_us = 10
//   bandwidth_gbs = 10             # GB/s = 1e9 bytes/s, one direction, one process pair
//   [links.inter]                  # between nodes (one node's link, shared by its processes)
//   latency_us = 30
//   bandwidth_gbs = 3.125
//   [links.intra_shm]              # optional: messages of a pipeline's stages on one node
//   latency_us = 8                 # (loom's shared-memory point-to-point, for groups of at
//   bandwidth_gbs = 6              # most kShmP2pMaxRanks); written by --calibrate
//
//   [measured]                     # optional; written by --calibrate
//   on = "host, 2026-12-01 06:30 UTC, 4 processes"  # free text: where and when
//   contention = [1.0, 1.01, 1.55, 2.05]       # compute slowdown with 1, 2, 3, 4 busy processes
//   allreduce_shm = [[2, 4096, 3.1e-5], ...]   # [ranks, bytes, seconds]
//   allreduce_tcp = [[2, 4096, 9.0e-5], ...]
//   reduce_scatter_all_gather_shm = [...]      # the pair, as for --zero 1/2
//   reduce_scatter_all_gather_tcp = [...]
//   ps = [[2, 1, 4194304, 0.012], ...]         # [workers, servers, bytes, seconds] one push+pull
//
// Units in the file are the ones in the key names; in the struct, seconds, bytes and
// bytes/s. Unknown keys and wrong types are a DataError naming the file and the key.
// Required: cluster.nodes, processes_per_node, cores_per_node, memory_per_node_gib and
// [links.intra]; [links.inter] too when nodes > 1 (one node: it defaults to intra);
// [links.intra_shm] optional (not given: point-to-point on one node goes at intra).
// Optional: cluster.name, process_base_mib (0), process_speeds (all 1; each above 0),
// every [measured] key.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace loom::plan {

struct Link {
  double latency_s = 0;
  double bandwidth_Bps = 0;  // one direction, bytes per second
};

// One measured collective or ps round: `ranks` (for ps: workers), `servers` (ps only,
// else 0), `bytes` of float32 data, `seconds` (median).
struct Measurement {
  int ranks = 0;
  int servers = 0;
  int64_t bytes = 0;
  double seconds = 0;
};

enum class Transport { shared_memory, tcp };

// loom's own cost per step of one strategy and its degrees beyond what the cost model
// computes, measured on a model of next to no compute (plan/overhead.h). `workers`:
// allreduce N, ps W, 1 otherwise; `stages`, `micro_batches`: pipeline; `tensors`: the
// parameter tensors of the model it was measured on (0: not recorded).
struct Overhead {
  std::string strategy;
  int workers = 1;
  int servers = 0;
  int stages = 1;
  int64_t micro_batches = 1;
  double seconds = 0;
  int64_t tensors = 0;
};

struct Cluster {
  std::string name;
  int nodes = 1;
  int processes_per_node = 1;
  int cores_per_node = 1;
  int64_t memory_per_node_bytes = 0;
  int64_t process_base_bytes = 0;
  Link intra;
  Link inter;
  // Point to point between processes of one node through shared memory (a pipeline's
  // stages when their group has at most kShmP2pMaxRanks ranks): measured, or none.
  std::optional<Link> intra_shm;
  // As comm's rings (comm/shm_p2p.h): groups of at most 8 ranks; a message goes through
  // a ring of 4 MiB when it fits beside the sixteenth kept for redirects and its header.
  static constexpr int kShmP2pMaxRanks = 8;
  static constexpr int64_t kShmP2pRingBytes = 4 << 20;
  static constexpr int64_t kShmP2pMaxBytes = kShmP2pRingBytes - kShmP2pRingBytes / 16 - 64;
  // Relative compute speed of the process of each rank, 1 = the profiled speed (the
  // fastest process); empty or shorter: 1. Ranks as loom train numbers them: allreduce
  // data ranks; ps workers 0..W-1 then servers; pipeline stages; a mesh's stage s of
  // replica d at d * pp + s.
  // --calibrate measures it (speeds within kSpeedTolerance of the fastest are written as 1).
  std::vector<double> process_speeds;
  // Measured (empty when not calibrated): contention[k-1] is the compute slowdown when
  // k processes of one thread each compute at once on one node (>= 1 after k = 1).
  std::vector<double> contention;
  std::vector<Measurement> allreduce_shm, allreduce_tcp;
  std::vector<Measurement> rs_ag_shm, rs_ag_tcp;  // reduce-scatter + all-gather
  std::vector<Measurement> ps;
  std::string measured_on;  // [measured] on: where and when the tables were measured ("" when not)
  // [measured] overhead = [["allreduce", N, S, P, M, seconds], ...] or, with the
  // model's parameter tensors, [["allreduce", N, S, P, M, tensors, seconds], ...].
  std::vector<Overhead> overheads;

  int max_processes() const { return nodes * processes_per_node; }
  // process_speeds[rank], 1 when not listed.
  double speed(int rank) const;
  // The smallest and the largest speed of ranks 0..processes-1.
  double slowest(int processes) const;
  double fastest(int processes) const;
  // Calibration's run-to-run noise on this machine: measured speeds within 5% of the
  // fastest count as equal (1).
  static constexpr double kSpeedTolerance = 0.05;

  // Seconds one allreduce of `bytes` over `ranks` processes takes. Ranks fill nodes in
  // order (processes_per_node per node). All on one node: the shared-memory table
  // (Transport::shared_memory, loom's default on one host) or the TCP table; else, and
  // when the table is empty, a flat ring over the slowest link it crosses:
  // 2(N-1) latency + 2 (N-1)/N bytes / bandwidth. Between measured points: linear in
  // bytes at the nearest measured ranks (ties: the larger); below the smallest measured
  // size, log-log along the two smallest (slope within [0, 1]); above the largest,
  // proportional to bytes. Ranks that were not measured: the nearest measured ranks'
  // time times ring(ranks) / ring(nearest) at these bytes. 0 for ranks <= 1 or bytes <= 0.
  double allreduce_s(int ranks, int64_t bytes, Transport transport = Transport::shared_memory) const;
  // The same for a reduce-scatter followed by an all-gather (ZeRO). Ring: half per op.
  double reduce_scatter_all_gather_s(int ranks, int64_t bytes, Transport transport = Transport::shared_memory) const;
  // One message of `bytes` between two processes (pipeline stages) of a group of
  // `group_ranks`, on one node or not: latency + bytes / bandwidth over intra_shm (one
  // node, a group that has rings, a message that fits one, and measured), intra or inter.
  double p2p_s(int64_t bytes, bool same_node, int group_ranks = 2) const;
  // One worker's push + pull of `bytes` of parameters through `servers` servers while
  // `workers` workers do the same (sync ps round). Measured table, else each server
  // moving 2 * workers * bytes / servers over the intra (one node) or inter link:
  // 2 latency + 2 workers bytes / servers / bandwidth. One node means workers + servers
  // <= processes_per_node. The table is read as allreduce_s reads its own, at the
  // nearest measured (workers, servers) (fewest steps away), scaled by the formula's
  // ratio when that is not this combination.
  double ps_round_s(int workers, int servers, int64_t bytes) const;
  // The compute slowdown of a process when `busy` processes with `threads` threads each
  // compute on one node: the measured contention table (scaled by threads), else
  // max(1, busy * threads / cores_per_node). Scaled by threads: k = busy * threads
  // one-thread processes' slowdown, contention[k-1], and beyond the table
  // contention.back() * k / size. Never below 1.
  double slowdown(int busy, int threads) const;
  // Memory each of `processes` processes on one node may use (memory_per_node / processes).
  int64_t memory_per_process(int processes) const;

  std::string to_toml() const;
  // `source` names the file in a DataError.
  static Cluster from_toml(const std::string& text, const std::string& source);
  static Cluster load(const std::string& path);
  // This machine, not measured: one node named after the host, its cores (the CPUs this
  // process may run on; processes_per_node = cores unless `processes` > 0), its
  // available memory (MemAvailable), process_base_bytes = kAssumedProcessBaseBytes,
  // loopback links of typical speed (assumed: 30 us, 4 GB/s); the measured tables empty.
  static Cluster this_machine(int processes);
  // A loom worker's resident memory before its model, assumed when not measured (the
  // libtorch CPU library, a Gloo context, a data set's pages): 300 MiB.
  static constexpr int64_t kAssumedProcessBaseBytes = int64_t{300} << 20;
};

}  // namespace loom::plan
