#include "loom/core/dist_env.h"

#include <gtest/gtest.h>

#include <map>

#include "loom/core/error.h"

namespace {

loom::DistEnv parse(const std::map<std::string, std::string>& vars) {
  return loom::DistEnv::from_lookup([&](const std::string& k) -> std::optional<std::string> {
    auto it = vars.find(k);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  });
}

TEST(DistEnv, NoVariablesIsOneProcess) {
  const auto env = parse({});
  EXPECT_EQ(env.rank, 0);
  EXPECT_EQ(env.world_size, 1);
  EXPECT_EQ(env.source, "none");
  EXPECT_EQ(env.master_addr, "127.0.0.1");
  EXPECT_EQ(env.master_port, 29500);
}

TEST(DistEnv, Torchrun) {
  const auto env = parse({{"RANK", "3"},
                          {"WORLD_SIZE", "4"},
                          {"LOCAL_RANK", "1"},
                          {"LOCAL_WORLD_SIZE", "2"},
                          {"MASTER_ADDR", "10.1.2.3"},
                          {"MASTER_PORT", "1234"}});
  EXPECT_EQ(env.source, "torchrun");
  EXPECT_EQ(env.rank, 3);
  EXPECT_EQ(env.world_size, 4);
  EXPECT_EQ(env.local_rank, 1);
  EXPECT_EQ(env.local_world_size, 2);
  EXPECT_EQ(env.master_addr, "10.1.2.3");
  EXPECT_EQ(env.master_port, 1234);
}

TEST(DistEnv, TorchrunWinsOverSlurm) {
  const auto env = parse({{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "8"}});
  EXPECT_EQ(env.source, "torchrun");
  EXPECT_EQ(env.world_size, 2);
}

TEST(DistEnv, Slurm) {
  const auto env =
      parse({{"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "8"}, {"SLURM_LOCALID", "1"}, {"SLURM_NTASKS_PER_NODE", "4(x2)"}});
  EXPECT_EQ(env.source, "slurm");
  EXPECT_EQ(env.rank, 5);
  EXPECT_EQ(env.world_size, 8);
  EXPECT_EQ(env.local_rank, 1);
  EXPECT_EQ(env.local_world_size, 4);
}

TEST(DistEnv, OpenMpi) {
  const auto env = parse({{"OMPI_COMM_WORLD_RANK", "2"},
                          {"OMPI_COMM_WORLD_SIZE", "3"},
                          {"OMPI_COMM_WORLD_LOCAL_RANK", "0"},
                          {"OMPI_COMM_WORLD_LOCAL_SIZE", "1"}});
  EXPECT_EQ(env.source, "openmpi");
  EXPECT_EQ(env.rank, 2);
  EXPECT_EQ(env.world_size, 3);
}

TEST(DistEnv, BadValuesNameTheVariable) {
  try {
    parse({{"RANK", "x"}, {"WORLD_SIZE", "2"}});
    FAIL();
  } catch (const loom::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("RANK='x'"), std::string::npos) << e.what();
  }
  try {
    parse({{"RANK", "2"}, {"WORLD_SIZE", "2"}});
    FAIL();
  } catch (const loom::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("RANK=2 is not below WORLD_SIZE=2"), std::string::npos) << e.what();
  }
  EXPECT_THROW(parse({{"RANK", "0"}}), loom::ConfigError);
  EXPECT_THROW(parse({{"MASTER_PORT", "70000"}}), loom::ConfigError);
}

}  // namespace
