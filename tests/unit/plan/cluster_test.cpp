// The planner's cluster file: a TOML round trip, a hand-written file, errors that name
// the file and the key, the measured tables' interpolation, the ring and ps formulas
// when nothing is measured, and the compute slowdown with and without a table.
#include "loom/plan/cluster.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <string>

#include "loom/comm/shm_collectives.h"
#include "loom/comm/shm_p2p.h"
#include "loom/core/error.h"
#include "support/temp_path.h"

namespace {

using namespace loom::plan;

constexpr int64_t kMiB = 1 << 20;

// The DataError of from_toml(text, "c.toml"); fails the test when there is none.
std::string error_of(const std::string& text) {
  try {
    Cluster::from_toml(text, "c.toml");
  } catch (const loom::DataError& e) {
    const std::string what = e.what();
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
    return what;
  }
  ADD_FAILURE() << "no DataError for:\n" << text;
  return "";
}

const char* const kMinimal = R"(
[cluster]
nodes = 1
processes_per_node = 4
cores_per_node = 2
memory_per_node_gib = 8
[links.intra]
latency_us = 10
bandwidth_gbs = 2
)";

Cluster measured_cluster() {
  Cluster c;
  c.name = "box \"a\"";
  c.nodes = 2;
  c.processes_per_node = 4;
  c.cores_per_node = 2;
  c.memory_per_node_bytes = 23456789012;
  c.process_base_bytes = 163106816;
  c.intra = {63.1e-6, 1.7e9};
  c.inter = {30e-6, 3.125e9};
  c.intra_shm = Link{7.9e-6, 5.3e9};
  c.contention = {1.0, 1.03, 1.48, 1.99};
  c.process_speeds = {1.0, 0.5, 0.75};
  c.allreduce_shm = {{2, 0, 4096, 1.6e-4}, {2, 0, kMiB, 4.2e-4}, {4, 0, 4096, 3.7e-4}};
  c.allreduce_tcp = {{2, 0, 4096, 6.9e-4}};
  c.rs_ag_shm = {{3, 0, 64 * kMiB, 0.0535}};
  c.rs_ag_tcp = {{4, 0, 16 * kMiB, 0.027}, {4, 0, 64 * kMiB, 0.151}};
  c.ps = {{2, 1, 4 * kMiB, 0.033}, {2, 2, 4096, 0.0017}};
  c.measured_on = "box, 2026-12-01 06:30 UTC";
  c.overheads = {
      {"single", 1, 0, 1, 1, 2.5e-4}, {"pipeline", 1, 0, 2, 4, 1.25e-3}, {"allreduce", 2, 0, 1, 1, 6e-4, 32}};
  return c;
}

void expect_rows_eq(const std::vector<Measurement>& a, const std::vector<Measurement>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].ranks, b[i].ranks) << i;
    EXPECT_EQ(a[i].servers, b[i].servers) << i;
    EXPECT_EQ(a[i].bytes, b[i].bytes) << i;
    EXPECT_EQ(a[i].seconds, b[i].seconds) << i;  // written in shortest round-trip form
  }
}

TEST(Cluster, TomlRoundTripKeepsEverything) {
  const Cluster c = measured_cluster();
  const Cluster r = Cluster::from_toml(c.to_toml(), "round-trip");
  EXPECT_EQ(r.name, c.name);
  EXPECT_EQ(r.nodes, 2);
  EXPECT_EQ(r.processes_per_node, 4);
  EXPECT_EQ(r.cores_per_node, 2);
  EXPECT_EQ(r.memory_per_node_bytes, c.memory_per_node_bytes);
  EXPECT_EQ(r.process_base_bytes, c.process_base_bytes);
  EXPECT_NEAR(r.intra.latency_s, c.intra.latency_s, 1e-15);
  EXPECT_NEAR(r.intra.bandwidth_Bps, c.intra.bandwidth_Bps, 1e-3);
  EXPECT_NEAR(r.inter.latency_s, c.inter.latency_s, 1e-15);
  EXPECT_NEAR(r.inter.bandwidth_Bps, c.inter.bandwidth_Bps, 1e-3);
  ASSERT_TRUE(r.intra_shm);
  EXPECT_NEAR(r.intra_shm->latency_s, c.intra_shm->latency_s, 1e-15);
  EXPECT_NEAR(r.intra_shm->bandwidth_Bps, c.intra_shm->bandwidth_Bps, 1e-3);
  EXPECT_EQ(r.contention, c.contention);
  EXPECT_EQ(r.process_speeds, c.process_speeds);
  expect_rows_eq(r.allreduce_shm, c.allreduce_shm);
  expect_rows_eq(r.allreduce_tcp, c.allreduce_tcp);
  expect_rows_eq(r.rs_ag_shm, c.rs_ag_shm);
  expect_rows_eq(r.rs_ag_tcp, c.rs_ag_tcp);
  expect_rows_eq(r.ps, c.ps);
  EXPECT_EQ(r.measured_on, c.measured_on);
  ASSERT_EQ(r.overheads.size(), 3u);
  EXPECT_EQ(r.overheads[0].tensors, 0);
  EXPECT_EQ(r.overheads[2].tensors, 32);
  EXPECT_EQ(r.overheads[2].seconds, 6e-4);
  EXPECT_EQ(r.overheads[1].strategy, "pipeline");
  EXPECT_EQ(r.overheads[1].stages, 2);
  EXPECT_EQ(r.overheads[1].micro_batches, 4);
  EXPECT_EQ(r.overheads[1].seconds, 1.25e-3);
  // And the text is stable: written again, the same.
  EXPECT_EQ(r.to_toml(), c.to_toml());
}

TEST(Cluster, AHandWrittenFileWithoutMeasurements) {
  const std::string path = loom::test::temp_path("horovod.toml");
  std::ofstream(path) << R"(# Horovod's 2018 cluster, by hand
[cluster]
name = "horovod-2018"
nodes = 128
processes_per_node = 4
cores_per_node = 4
memory_per_node_gib = 256
process_base_mib = 0.5

[links.intra]
latency_us = 10
bandwidth_gbs = 10
[links.inter]
latency_us = 30
bandwidth_gbs = 3.125
)";
  const Cluster c = Cluster::load(path);
  EXPECT_EQ(c.name, "horovod-2018");
  EXPECT_EQ(c.max_processes(), 512);
  EXPECT_EQ(c.cores_per_node, 4);
  EXPECT_EQ(c.memory_per_node_bytes, int64_t{256} << 30);
  EXPECT_EQ(c.process_base_bytes, 512 << 10);
  EXPECT_DOUBLE_EQ(c.intra.latency_s, 10e-6);
  EXPECT_DOUBLE_EQ(c.intra.bandwidth_Bps, 10e9);
  EXPECT_DOUBLE_EQ(c.inter.latency_s, 30e-6);
  EXPECT_DOUBLE_EQ(c.inter.bandwidth_Bps, 3.125e9);
  EXPECT_TRUE(c.contention.empty());
  EXPECT_TRUE(c.allreduce_shm.empty());
  EXPECT_TRUE(c.ps.empty());
  EXPECT_EQ(c.memory_per_process(4), (int64_t{256} << 30) / 4);
  // One node may leave the inter link out: it is the intra link.
  const Cluster one = Cluster::from_toml(kMinimal, "minimal");
  EXPECT_DOUBLE_EQ(one.inter.latency_s, 10e-6);
  EXPECT_DOUBLE_EQ(one.inter.bandwidth_Bps, 2e9);
  EXPECT_EQ(one.process_base_bytes, 0);
}

TEST(Cluster, ProcessSpeedsByRankOneWhenNotListed) {
  const Cluster c = Cluster::from_toml(
      std::string(kMinimal).replace(std::string(kMinimal).find("[links"), 0, "process_speeds = [1, 0.5, 2.0]\n"),
      "speeds.toml");
  EXPECT_EQ(c.speed(0), 1.0);
  EXPECT_EQ(c.speed(1), 0.5);
  EXPECT_EQ(c.speed(2), 2.0);
  EXPECT_EQ(c.speed(3), 1.0);  // not listed
  EXPECT_EQ(c.slowest(1), 1.0);
  EXPECT_EQ(c.slowest(2), 0.5);
  EXPECT_EQ(c.slowest(4), 0.5);
  EXPECT_EQ(c.fastest(2), 1.0);
  EXPECT_EQ(c.fastest(3), 2.0);
  EXPECT_TRUE(Cluster::from_toml(kMinimal, "none.toml").process_speeds.empty());
  EXPECT_EQ(Cluster::from_toml(kMinimal, "none.toml").slowest(4), 1.0);
}

TEST(Cluster, ErrorsNameTheFileAndTheKey) {
  // An unknown key, at every level.
  std::string e = error_of(std::string(kMinimal) + "[measured]\ncontentoin = [1.0]\n");
  EXPECT_NE(e.find("c.toml"), std::string::npos) << e;
  EXPECT_NE(e.find("measured.contentoin"), std::string::npos) << e;
  e = error_of(R"([cluster]
nodes = 1
processes_per_node = 4
cores = 2
)");
  EXPECT_NE(e.find("c.toml:4"), std::string::npos) << e;  // the line, too
  EXPECT_NE(e.find("cluster.cores"), std::string::npos) << e;
  e = error_of(std::string(kMinimal) + "[extra]\n");
  EXPECT_NE(e.find("extra"), std::string::npos) << e;
  // A speed that is not above 0.
  e = error_of(std::string(kMinimal).replace(std::string(kMinimal).find("[links"), 0, "process_speeds = [1, 0]\n"));
  EXPECT_NE(e.find("cluster.process_speeds[1]"), std::string::npos) << e;
  EXPECT_NE(e.find("must be above 0"), std::string::npos) << e;
  // A wrong type.
  std::string text = kMinimal;
  text.replace(text.find("nodes = 1"), 9, "nodes = \"one\"");
  e = error_of(text);
  EXPECT_NE(e.find("c.toml"), std::string::npos) << e;
  EXPECT_NE(e.find("cluster.nodes must be an integer, got a string"), std::string::npos) << e;
  // A missing key.
  text = kMinimal;
  text.erase(text.find("cores_per_node = 2"), 18);
  e = error_of(text);
  EXPECT_NE(e.find("cluster.cores_per_node is missing"), std::string::npos) << e;
  // Two nodes need the inter link.
  text = kMinimal;
  text.replace(text.find("nodes = 1"), 9, "nodes = 2");
  e = error_of(text);
  EXPECT_NE(e.find("links.inter is missing"), std::string::npos) << e;
  // A value out of range, a bad row, a row's bad type.
  e = error_of(std::string(kMinimal) + "[measured]\nallreduce_shm = [[2, 4096, 1e-4], [2, 8192]]\n");
  EXPECT_NE(e.find("measured.allreduce_shm[1]"), std::string::npos) << e;
  e = error_of(std::string(kMinimal) + "[measured]\nps = [[2, 1, 4096.5, 1e-4]]\n");
  EXPECT_NE(e.find("measured.ps[0] (bytes) must be an integer"), std::string::npos) << e;
  text = kMinimal;
  text.replace(text.find("bandwidth_gbs = 2"), 17, "bandwidth_gbs = 0");
  e = error_of(text);
  EXPECT_NE(e.find("links.intra.bandwidth_gbs must be above 0"), std::string::npos) << e;
  // Not TOML at all: the file, line and column.
  e = error_of("[cluster\nnodes = 1\n");
  EXPECT_NE(e.find("c.toml:1:"), std::string::npos) << e;
  // A file that is not there.
  try {
    Cluster::load("/nonexistent/cluster.toml");
    ADD_FAILURE() << "no error";
  } catch (const loom::DataError& err) {
    EXPECT_NE(std::string(err.what()).find("/nonexistent/cluster.toml"), std::string::npos) << err.what();
  }
}

Cluster one_node(int processes) {
  Cluster c;
  c.nodes = 2;
  c.processes_per_node = processes;
  c.cores_per_node = 2;
  c.intra = {20e-6, 2e9};
  c.inter = {50e-6, 1e9};
  return c;
}

// Pipeline messages on one node go through the shared-memory rings when calibrated
// and when the rings take them (a group of at most 8 ranks, a message that fits).
TEST(Cluster, PointToPointOnOneNodeUsesTheSharedMemoryLinkWhereTheRingsCarryIt) {
  Cluster c = one_node(4);
  c.intra_shm = Link{5e-6, 8e9};
  EXPECT_DOUBLE_EQ(c.p2p_s(kMiB, true), 5e-6 + kMiB / 8e9);
  EXPECT_DOUBLE_EQ(c.p2p_s(kMiB, true, 8), 5e-6 + kMiB / 8e9);
  EXPECT_DOUBLE_EQ(c.p2p_s(kMiB, true, 9), 20e-6 + kMiB / 2e9);       // no rings: Gloo
  EXPECT_DOUBLE_EQ(c.p2p_s(4 * kMiB, true), 20e-6 + 4 * kMiB / 2e9);  // does not fit a ring
  EXPECT_DOUBLE_EQ(c.p2p_s(kMiB, false), 50e-6 + kMiB / 1e9);
}

// The planner's copy of the rings' limits is comm's.
TEST(Cluster, SharedMemoryRingLimitsAreCommsOwn) {
  EXPECT_EQ(Cluster::kShmP2pMaxRanks, loom::comm::ShmP2p::kMaxRanks);
  EXPECT_EQ(Cluster::kShmP2pRingBytes, loom::comm::ShmCollectives::Options{}.p2p_ring_bytes);
}

TEST(Cluster, RingFormulaWhenNothingIsMeasured) {
  const Cluster c = one_node(4);
  const double bytes = 8 * kMiB;
  // 4 ranks on one node: 2(N-1) latency + 2 (N-1)/N bytes / bandwidth over intra.
  EXPECT_DOUBLE_EQ(c.allreduce_s(4, 8 * kMiB), 6 * 20e-6 + 1.5 * bytes / 2e9);
  EXPECT_DOUBLE_EQ(c.allreduce_s(4, 8 * kMiB, Transport::tcp), 6 * 20e-6 + 1.5 * bytes / 2e9);
  // The pair (ZeRO) is half a ring each: the same total.
  EXPECT_DOUBLE_EQ(c.reduce_scatter_all_gather_s(4, 8 * kMiB), c.allreduce_s(4, 8 * kMiB));
  // 8 ranks cross the inter link, the slower one.
  EXPECT_DOUBLE_EQ(c.allreduce_s(8, 8 * kMiB), 14 * 50e-6 + 1.75 * bytes / 1e9);
  EXPECT_EQ(c.allreduce_s(1, 8 * kMiB), 0);
  EXPECT_EQ(c.allreduce_s(4, 0), 0);
  EXPECT_DOUBLE_EQ(c.p2p_s(kMiB, true), 20e-6 + kMiB / 2e9);
  EXPECT_DOUBLE_EQ(c.p2p_s(kMiB, false), 50e-6 + kMiB / 1e9);
  EXPECT_FALSE(Cluster::from_toml(kMinimal, "minimal").intra_shm);
  // ps: each server moves 2 W B / S.
  EXPECT_DOUBLE_EQ(c.ps_round_s(2, 1, kMiB), 2 * 20e-6 + 2.0 * 2 * kMiB / 2e9);
  EXPECT_DOUBLE_EQ(c.ps_round_s(4, 2, kMiB), 2 * 50e-6 + 2.0 * 4 * kMiB / 2 / 1e9);  // 6 processes: two nodes
}

TEST(Cluster, MeasuredTablesAreInterpolated) {
  Cluster c = one_node(4);
  c.allreduce_shm = {{2, 0, 4096, 1e-4}, {2, 0, kMiB, 1e-3}, {2, 0, 4 * kMiB, 4e-3}, {4, 0, kMiB, 3e-3}};
  // At a point, exactly; between, linear in bytes.
  EXPECT_DOUBLE_EQ(c.allreduce_s(2, kMiB), 1e-3);
  EXPECT_DOUBLE_EQ(c.allreduce_s(2, 2 * kMiB + kMiB / 2), 2.5e-3);
  const double mid = 4096 + (kMiB - 4096) / 4.0;
  EXPECT_NEAR(c.allreduce_s(2, static_cast<int64_t>(mid)), 1e-4 + 0.25 * 9e-4, 1e-12);
  // Below the smallest: log-log along the two smallest (slope log(10)/log(256)).
  const double slope = std::log(10.0) / std::log(256.0);
  EXPECT_NEAR(c.allreduce_s(2, 1024), 1e-4 * std::pow(0.25, slope), 1e-12);
  // Above the largest: proportional.
  EXPECT_NEAR(c.allreduce_s(2, 16 * kMiB), 16e-3, 1e-12);
  // One point at 4 ranks: along the ring formula.
  const auto ring = [&](int n, double b) { return 2 * (n - 1) * 20e-6 + 2.0 * (n - 1) / n * b / 2e9; };
  EXPECT_NEAR(c.allreduce_s(4, 2 * kMiB), 3e-3 * ring(4, 2.0 * kMiB) / ring(4, kMiB), 1e-12);
  // 3 ranks, not measured: the nearest (ties: the larger, 4) scaled by the ring's ratio.
  EXPECT_NEAR(c.allreduce_s(3, kMiB), 3e-3 * ring(3, kMiB) / ring(4, kMiB), 1e-12);
  // The TCP table is empty: the formula. Beyond one node: the formula too.
  EXPECT_DOUBLE_EQ(c.allreduce_s(2, kMiB, Transport::tcp), ring(2, kMiB));
  EXPECT_DOUBLE_EQ(c.allreduce_s(8, kMiB), 14 * 50e-6 + 1.75 * kMiB / 1e9);
  // The pair reads its own tables.
  c.rs_ag_tcp = {{2, 0, kMiB, 7e-3}};
  EXPECT_DOUBLE_EQ(c.reduce_scatter_all_gather_s(2, kMiB, Transport::tcp), 7e-3);
  EXPECT_DOUBLE_EQ(c.reduce_scatter_all_gather_s(2, kMiB), ring(2, kMiB));
  // ps: the measured combination, else the nearest scaled by the formula.
  c.ps = {{2, 1, 4096, 5e-4}, {2, 1, 4 * kMiB, 0.03}};
  EXPECT_DOUBLE_EQ(c.ps_round_s(2, 1, 4 * kMiB), 0.03);
  EXPECT_NEAR(c.ps_round_s(2, 1, 2 * kMiB), 5e-4 + (0.03 - 5e-4) * (2.0 * kMiB - 4096) / (4.0 * kMiB - 4096), 1e-12);
  const auto ps_formula = [&](int w, int s, double b) { return 2 * 20e-6 + 2.0 * w * b / s / 2e9; };
  EXPECT_NEAR(c.ps_round_s(3, 1, 4 * kMiB), 0.03 * ps_formula(3, 1, 4.0 * kMiB) / ps_formula(2, 1, 4.0 * kMiB), 1e-12);
}

TEST(Cluster, SlowdownFromTheTableOrTheCores) {
  Cluster c = one_node(4);
  // No table: max(1, busy * threads / cores).
  EXPECT_DOUBLE_EQ(c.slowdown(1, 1), 1.0);
  EXPECT_DOUBLE_EQ(c.slowdown(2, 1), 1.0);
  EXPECT_DOUBLE_EQ(c.slowdown(3, 1), 1.5);
  EXPECT_DOUBLE_EQ(c.slowdown(2, 2), 2.0);
  EXPECT_DOUBLE_EQ(c.slowdown(0, 1), 1.0);
  // Measured: contention[busy * threads - 1], never below 1, scaled beyond the table.
  c.contention = {1.0, 0.98, 1.6, 2.1};
  EXPECT_DOUBLE_EQ(c.slowdown(1, 1), 1.0);
  EXPECT_DOUBLE_EQ(c.slowdown(2, 1), 1.0);
  EXPECT_DOUBLE_EQ(c.slowdown(3, 1), 1.6);
  EXPECT_DOUBLE_EQ(c.slowdown(2, 2), 2.1);
  EXPECT_DOUBLE_EQ(c.slowdown(8, 1), 2.1 * 2);
}

TEST(Cluster, ThisMachine) {
  const Cluster c = Cluster::this_machine(3);
  EXPECT_EQ(c.nodes, 1);
  EXPECT_EQ(c.processes_per_node, 3);
  EXPECT_GE(c.cores_per_node, 1);
  EXPECT_GT(c.memory_per_node_bytes, 0);
  EXPECT_EQ(c.process_base_bytes, Cluster::kAssumedProcessBaseBytes);
  EXPECT_DOUBLE_EQ(c.intra.latency_s, 30e-6);
  EXPECT_DOUBLE_EQ(c.inter.bandwidth_Bps, c.intra.bandwidth_Bps);
  EXPECT_TRUE(c.contention.empty());
  EXPECT_EQ(Cluster::this_machine(0).processes_per_node, c.cores_per_node);
  // What it writes reads back.
  EXPECT_EQ(Cluster::from_toml(c.to_toml(), "this").memory_per_node_bytes, c.memory_per_node_bytes);
}

}  // namespace
