// plan::calibrate through real processes: the built `loom` executable started as
// `loom calibrate-rank` ranks under the launcher, on this machine, with a small time
// budget. Every table the cost model reads comes back filled and plausible, the file
// round-trips, and bad options or a rank that fails are one-line errors.
#include "loom/plan/calibrate.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "loom/core/error.h"
#include "loom/core/log.h"

namespace {

using namespace loom::plan;

constexpr int64_t kMiB = 1 << 20;

loom::plan::CalibrateOptions small(int processes) {
  CalibrateOptions o;
  o.processes = processes;
  o.threads = 1;
  o.budget_s = 2;
  o.max_repeats = 3;
  o.self = LOOM_BINARY;
  o.timeout = std::chrono::seconds(60);
  return o;
}

void expect_collective_table(const std::vector<Measurement>& rows, int processes, const char* name) {
  SCOPED_TRACE(name);
  // 7 sizes, 4 KiB .. 64 MiB, for each of 2..processes ranks.
  ASSERT_EQ(rows.size(), 7u * (processes - 1));
  for (const auto& m : rows) {
    EXPECT_GE(m.ranks, 2);
    EXPECT_LE(m.ranks, processes);
    EXPECT_EQ(m.servers, 0);
    EXPECT_GE(m.bytes, 4096);
    EXPECT_LE(m.bytes, 64 * kMiB);
    EXPECT_GT(m.seconds, 0);
    EXPECT_LT(m.seconds, 30);
  }
  EXPECT_EQ(rows.front().bytes, 4096);
  EXPECT_EQ(rows[6].bytes, 64 * kMiB);
}

TEST(Calibrate, TwoProcessesFillEveryTable) {
  const auto start = std::chrono::steady_clock::now();
  CalibrateOptions o = small(2);
  o.bench_slowdown = "1:3";  // rank 1 computes 3x slower in the speed measurement
  const Cluster c = calibrate(o);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(took, 60);
  // This machine.
  EXPECT_EQ(c.nodes, 1);
  EXPECT_EQ(c.processes_per_node, 2);
  EXPECT_GE(c.cores_per_node, 1);
  EXPECT_GT(c.memory_per_node_bytes, 0);
  EXPECT_FALSE(c.measured_on.empty());
  // A worker with libtorch and two contexts up: tens to hundreds of MiB.
  EXPECT_GT(c.process_base_bytes, 20 * kMiB);
  EXPECT_LT(c.process_base_bytes, 4096 * kMiB);
  // Loopback TCP: a message takes microseconds to milliseconds, moves MB/s to tens of GB/s.
  EXPECT_GT(c.intra.latency_s, 0);
  EXPECT_LT(c.intra.latency_s, 0.05);
  EXPECT_GT(c.intra.bandwidth_Bps, 1e7);
  EXPECT_LT(c.intra.bandwidth_Bps, 1e12);
  EXPECT_EQ(c.inter.latency_s, c.intra.latency_s);
  // Contention: 1 alone, then >= 1.
  ASSERT_EQ(c.contention.size(), 2u);
  EXPECT_EQ(c.contention[0], 1.0);
  EXPECT_GE(c.contention[1], 1.0);
  // Speeds: rank 0 the fastest, rank 1 about a third (its kernel stretched 3x; each rank
  // runs alone, so the window allows for this machine's noise).
  ASSERT_EQ(c.process_speeds.size(), 2u);
  EXPECT_EQ(c.process_speeds[0], 1.0);
  EXPECT_GT(c.process_speeds[1], 0.2);
  EXPECT_LT(c.process_speeds[1], 0.55);
  expect_collective_table(c.allreduce_shm, 2, "allreduce_shm");
  expect_collective_table(c.allreduce_tcp, 2, "allreduce_tcp");
  expect_collective_table(c.rs_ag_shm, 2, "rs_ag_shm");
  expect_collective_table(c.rs_ag_tcp, 2, "rs_ag_tcp");
  // Bigger buffers take longer (4 KiB against 64 MiB: far apart enough for any noise).
  EXPECT_LT(c.allreduce_tcp.front().seconds, c.allreduce_tcp[6].seconds);
  EXPECT_LT(c.allreduce_shm.front().seconds, c.allreduce_shm[6].seconds);
  // ps with 2 processes: one worker, one server, 3 sizes.
  ASSERT_EQ(c.ps.size(), 3u);
  for (const auto& m : c.ps) {
    EXPECT_EQ(m.ranks, 1);
    EXPECT_EQ(m.servers, 1);
    EXPECT_GT(m.seconds, 0);
  }
  EXPECT_LT(c.ps.front().seconds, c.ps.back().seconds);
  // The cost model reads the measured points back (interpolated in log space: within a
  // relative 1e-12, not 4 ulps; a measured 0.232 ms came back 5 ulps off once).
  EXPECT_NEAR(c.allreduce_s(2, c.allreduce_shm[3].bytes), c.allreduce_shm[3].seconds,
              1e-12 * c.allreduce_shm[3].seconds);
  EXPECT_NEAR(c.allreduce_s(2, c.allreduce_tcp[3].bytes, Transport::tcp), c.allreduce_tcp[3].seconds,
              1e-12 * c.allreduce_tcp[3].seconds);
  // And the file it becomes reads back the same.
  const Cluster r = Cluster::from_toml(c.to_toml(), "calibrated");
  EXPECT_EQ(r.to_toml(), c.to_toml());
}

TEST(Calibrate, BadOptionsAndAFailingRankAreOneLineErrors) {
  CalibrateOptions o = small(1);
  EXPECT_THROW(calibrate(o), loom::ConfigError);
  o = small(2);
  o.self = "/nonexistent/loom";
  try {
    calibrate(o);
    ADD_FAILURE() << "no error";
  } catch (const loom::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/loom"), std::string::npos) << e.what();
  }
  // A "loom" whose ranks exit 1 at once: the launcher's line, naming the rank.
  o.self = "/bin/false";
  try {
    calibrate(o);
    ADD_FAILURE() << "no error";
  } catch (const loom::LaunchError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("rank"), std::string::npos) << what;
    EXPECT_NE(what.find("exited with code 1"), std::string::npos) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
  }
}

}  // namespace
