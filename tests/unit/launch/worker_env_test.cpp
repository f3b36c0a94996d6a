#include "loom/launch/worker_env.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>

namespace loom::launch {
namespace {

std::map<std::string, std::string> as_map(const EnvVars& env) {
  std::map<std::string, std::string> m;
  for (const auto& [k, v] : env) m[k] = v;  // later entries win, like the child sees them
  return m;
}

TEST(WorkerEnv, SingleNodeUsesTorchrunNames) {
  LaunchOptions o;
  o.nproc = 4;
  auto env = as_map(worker_env(o, {2, 29501, 0}));
  EXPECT_EQ(env["RANK"], "2");
  EXPECT_EQ(env["WORLD_SIZE"], "4");
  EXPECT_EQ(env["LOCAL_RANK"], "2");
  EXPECT_EQ(env["LOCAL_WORLD_SIZE"], "4");
  EXPECT_EQ(env["GROUP_RANK"], "0");
  EXPECT_EQ(env["NODE_RANK"], "0");
  EXPECT_EQ(env["GROUP_WORLD_SIZE"], "1");
  EXPECT_EQ(env["MASTER_ADDR"], "127.0.0.1");
  EXPECT_EQ(env["MASTER_PORT"], "29501");
  EXPECT_EQ(env["LOOM_RESTART_COUNT"], "0");
  EXPECT_EQ(env["LOOM_LAUNCHED"], "1");
}

TEST(WorkerEnv, MultiNodeGivesGlobalRanks) {
  LaunchOptions o;
  o.nproc = 2;
  o.nnodes = 3;
  o.node_rank = 2;
  o.master_addr = "10.1.2.3";
  o.max_restarts = 4;
  auto env = as_map(worker_env(o, {1, 29500, 3}));
  EXPECT_EQ(env["RANK"], "5");
  EXPECT_EQ(env["WORLD_SIZE"], "6");
  EXPECT_EQ(env["LOCAL_RANK"], "1");
  EXPECT_EQ(env["LOCAL_WORLD_SIZE"], "2");
  EXPECT_EQ(env["GROUP_RANK"], "2");
  EXPECT_EQ(env["NODE_RANK"], "2");
  EXPECT_EQ(env["GROUP_WORLD_SIZE"], "3");
  EXPECT_EQ(env["MASTER_ADDR"], "10.1.2.3");
  EXPECT_EQ(env["MASTER_PORT"], "29500");
  EXPECT_EQ(env["LOOM_RESTART_COUNT"], "3");
  EXPECT_EQ(env["LOOM_MAX_RESTARTS"], "4");
}

TEST(WorkerEnv, ExtraEnvIsCalledWithTheGlobalRankAndAppliedLast) {
  LaunchOptions o;
  o.nproc = 2;
  o.nnodes = 2;
  o.node_rank = 1;
  std::vector<int> seen;
  o.extra_env = [&](int rank) {
    seen.push_back(rank);
    return EnvVars{{"ROLE", rank == 3 ? "server" : "worker"}, {"MASTER_ADDR", "override"}};
  };
  auto env = as_map(worker_env(o, {1, 1, 0}));
  EXPECT_EQ(seen, std::vector<int>{3});
  EXPECT_EQ(env["ROLE"], "server");
  EXPECT_EQ(env["MASTER_ADDR"], "override");
}

TEST(MergeEnvironment, ReplacesExistingNamesInPlaceAndAppendsNewOnes) {
  const std::vector<std::string> base = {"PATH=/bin", "RANK=7", "EMPTY=", "EQ=a=b"};
  const auto merged = merge_environment(base, {{"RANK", "0"}, {"NEW", "x"}, {"NEW", "y"}, {"EQ", "c"}});
  EXPECT_EQ(merged, (std::vector<std::string>{"PATH=/bin", "RANK=0", "EMPTY=", "EQ=c", "NEW=y"}));
}

TEST(CurrentEnvironment, SeesThisProcessEnvironment) {
  ASSERT_EQ(setenv("LOOM_WORKER_ENV_TEST", "42", 1), 0);
  const auto env = current_environment();
  EXPECT_NE(std::find(env.begin(), env.end(), "LOOM_WORKER_ENV_TEST=42"), env.end());
  unsetenv("LOOM_WORKER_ENV_TEST");
}

}  // namespace
}  // namespace loom::launch
