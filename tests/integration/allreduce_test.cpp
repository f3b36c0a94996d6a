// --strategy allreduce through the real CLI and launcher: the equivalence contract.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "support/process.h"
#include "support/train_runs.h"

namespace {

namespace fs = std::filesystem;

std::string dir_for(const std::string& name) { return loom::test::fresh_dir("allreduce", name); }

loom::test::RunResult loom_train(std::vector<std::string> args, int timeout_s = 180) {
  return loom::test::train_equivalence_job(std::move(args), timeout_s);
}

using loom::test::max_abs_diff;
class AllreduceEquivalence : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { reference_ = loom::test::single_reference("allreduce"); }
  static std::string reference_;
};
std::string AllreduceEquivalence::reference_;

TEST_F(AllreduceEquivalence, TwoWorkersEqualSingle) {
  const auto dir = dir_for("w2");
  const auto out = dir + "/m.pt";
  const auto r = loom_train({"--strategy", "allreduce", "--nproc", "2", "--save", out, "--trace", dir + "/t.json"});
  ASSERT_TRUE(r.exited_with(0)) << r.describe();
  EXPECT_LT(max_abs_diff(reference_, out), 1e-5);
  // One trace for the job, with both ranks' backward and bucket allreduce spans.
  const auto trace = nlohmann::json::parse(std::ifstream(dir + "/t.json"));
  std::set<std::pair<int, std::string>> seen;
  for (const auto& e : trace["traceEvents"]) {
    if (e["ph"] == "X") seen.insert({e["pid"].get<int>(), e["name"].get<std::string>()});
  }
  for (int rank : {0, 1}) {
    EXPECT_TRUE(seen.count({rank, "backward"})) << rank;
    EXPECT_TRUE(seen.count({rank, "allreduce bucket 0"})) << rank;
  }
}

// The count of allreduces each transport carried, from the debug line every rank logs at
// the end ("group 'world': N allreduce(s) through shared memory, M through Gloo").
std::pair<int64_t, int64_t> transport_counts(const std::string& err) {
  const std::string key = "group 'world': ";
  const auto at = err.find(key);
  if (at == std::string::npos) return {-1, -1};
  long long shm = -1, gloo = -1;
  std::sscanf(err.c_str() + at + key.size(), "%lld allreduce(s) through shared memory, %lld through Gloo", &shm, &gloo);
  return {shm, gloo};
}

// Two workers on one machine reduce through shared memory (every step's buckets), and
// LOOM_SHM_ALLREDUCE=0 really sends everything through Gloo; both equal single.
TEST_F(AllreduceEquivalence, SharedMemoryCarriesTheAllreducesUnlessTurnedOff) {
  const auto dir = dir_for("transport");
  const auto on =
      loom_train({"--strategy", "allreduce", "--nproc", "2", "--save", dir + "/on.pt", "--log-level", "debug"});
  ASSERT_TRUE(on.exited_with(0)) << on.describe();
  const auto [on_shm, on_gloo] = transport_counts(on.err);
  EXPECT_GE(on_shm, 20) << on.err;  // at least one bucket per step of 20
  EXPECT_EQ(on_gloo, 0) << on.err;
  EXPECT_LT(max_abs_diff(reference_, dir + "/on.pt"), 1e-5);

  const auto off = loom::test::train_equivalence_job(
      {"--strategy", "allreduce", "--nproc", "2", "--save", dir + "/off.pt", "--log-level", "debug"}, 180, "",
      {{"LOOM_SHM_ALLREDUCE", "0"}});
  ASSERT_TRUE(off.exited_with(0)) << off.describe();
  const auto [off_shm, off_gloo] = transport_counts(off.err);
  EXPECT_EQ(off_shm, 0) << off.err;
  EXPECT_EQ(off_gloo, on_shm + on_gloo) << off.err;  // the same operations, all the other way
  EXPECT_LT(max_abs_diff(reference_, dir + "/off.pt"), 1e-5);
}

TEST_F(AllreduceEquivalence, ThreeWorkersEqualSingle) {
  const auto out = dir_for("w3") + "/m.pt";
  const auto r = loom_train({"--strategy", "allreduce", "--nproc", "3", "--save", out, "--bucket-mb", "0.05"});
  ASSERT_TRUE(r.exited_with(0)) << r.describe();
  EXPECT_LT(max_abs_diff(reference_, out), 1e-5);
}

TEST_F(AllreduceEquivalence, ProportionalSharesEqualSingle) {
  const auto out = dir_for("w3p") + "/m.pt";
  const auto r = loom_train({"--strategy", "allreduce", "--nproc", "3", "--partition", "proportional",
                             "--shard-weights", "2,1,1", "--save", out});
  ASSERT_TRUE(r.exited_with(0)) << r.describe();
  EXPECT_LT(max_abs_diff(reference_, out), 1e-5);
}

TEST(Allreduce, ModelAveragingEveryStepWithPlainSgdEqualsSingle) {
  const auto dir = dir_for("params");
  auto single = loom_train({"--strategy", "single", "--momentum", "0", "--save", dir + "/s.pt"});
  ASSERT_TRUE(single.exited_with(0)) << single.describe();
  auto avg = loom_train({"--strategy", "allreduce", "--nproc", "2", "--sync", "params", "--sync-every", "1",
                         "--momentum", "0", "--save", dir + "/a.pt"});
  ASSERT_TRUE(avg.exited_with(0)) << avg.describe();
  EXPECT_LT(max_abs_diff(dir + "/s.pt", dir + "/a.pt"), 1e-5);
}

TEST(Allreduce, AWorkerThatDiesEndsTheJobWithANamedError) {
  // Rank 1 cannot read its data directory: it fails, the launcher names it, rank 0 stops.
  loom::test::RunOptions o;
  o.argv = {LOOM_BINARY,
            "run",
            "--nproc",
            "2",
            "--",
            "sh",
            "-c",
            std::string("if [ $RANK = 1 ]; then exec ") + LOOM_BINARY +
                " train --strategy allreduce --data-dir /nonexistent --timeout 30; else exec " + LOOM_BINARY +
                " train --strategy allreduce --model mlp --data synthetic --timeout 30; fi"};
  o.timeout = std::chrono::seconds(60);
  const auto r = loom::test::run(o);
  EXPECT_FALSE(r.timed_out) << r.describe();
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("loom: rank 1: data error"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("launch error: rank 1 exited with code 1"), std::string::npos) << r.err;
}

}  // namespace
