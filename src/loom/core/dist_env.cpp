#include "loom/core/dist_env.h"

#include <cstdlib>

#include "loom/core/error.h"

namespace loom {

namespace {

int parse_int(const std::string& name, const std::string& value) {
  try {
    size_t used = 0;
    const long v = std::stol(value, &used);
    if (used == value.size() && v >= 0 && v <= 1 << 30) return static_cast<int>(v);
  } catch (const std::exception&) {}
  LOOM_THROW(ConfigError, "environment variable {}='{}' is not a non-negative integer", name, value);
}

}  // namespace

DistEnv DistEnv::from_lookup(const std::function<std::optional<std::string>(const std::string&)>& get) {
  DistEnv env;
  auto read = [&](const std::string& name, int& out) {
    if (auto v = get(name)) {
      out = parse_int(name, *v);
      return true;
    }
    return false;
  };

  const char* rank_var = "RANK";
  const char* size_var = "WORLD_SIZE";
  if (get("RANK") || get("WORLD_SIZE")) {
    env.source = "torchrun";
    LOOM_CHECK(get("RANK") && get("WORLD_SIZE"), ConfigError, "environment: RANK and WORLD_SIZE must be set together");
    read("RANK", env.rank);
    read("WORLD_SIZE", env.world_size);
    env.local_rank = env.rank;
    env.local_world_size = env.world_size;
    read("LOCAL_RANK", env.local_rank);
    read("LOCAL_WORLD_SIZE", env.local_world_size);
  } else if (get("SLURM_PROCID") && get("SLURM_NTASKS")) {
    env.source = "slurm";
    rank_var = "SLURM_PROCID";
    size_var = "SLURM_NTASKS";
    read("SLURM_PROCID", env.rank);
    read("SLURM_NTASKS", env.world_size);
    env.local_rank = env.rank;
    env.local_world_size = env.world_size;
    read("SLURM_LOCALID", env.local_rank);
    if (auto per_node = get("SLURM_NTASKS_PER_NODE")) {
      // May look like "2(x3)"; the leading number is the per-node count.
      const auto digits = per_node->substr(0, per_node->find_first_not_of("0123456789"));
      if (!digits.empty()) env.local_world_size = parse_int("SLURM_NTASKS_PER_NODE", digits);
    }
  } else if (get("OMPI_COMM_WORLD_RANK") && get("OMPI_COMM_WORLD_SIZE")) {
    env.source = "openmpi";
    rank_var = "OMPI_COMM_WORLD_RANK";
    size_var = "OMPI_COMM_WORLD_SIZE";
    read("OMPI_COMM_WORLD_RANK", env.rank);
    read("OMPI_COMM_WORLD_SIZE", env.world_size);
    env.local_rank = env.rank;
    env.local_world_size = env.world_size;
    read("OMPI_COMM_WORLD_LOCAL_RANK", env.local_rank);
    read("OMPI_COMM_WORLD_LOCAL_SIZE", env.local_world_size);
  }
  LOOM_CHECK(env.world_size >= 1, ConfigError, "environment: {} must be at least 1", size_var);
  LOOM_CHECK(env.rank < env.world_size, ConfigError, "environment: {}={} is not below {}={}", rank_var, env.rank,
             size_var, env.world_size);
  LOOM_CHECK(env.local_world_size >= 1 && env.local_rank < env.local_world_size, ConfigError,
             "environment: local rank {} is not below local world size {}", env.local_rank, env.local_world_size);

  if (auto addr = get("MASTER_ADDR")) {
    LOOM_CHECK(!addr->empty(), ConfigError, "environment: MASTER_ADDR is empty");
    env.master_addr = *addr;
  }
  read("MASTER_PORT", env.master_port);
  LOOM_CHECK(env.master_port > 0 && env.master_port < 65536, ConfigError,
             "environment: MASTER_PORT={} is not a valid port", env.master_port);
  read("LOOM_RESTART_COUNT", env.restart_count);
  return env;
}

DistEnv DistEnv::from_environment() {
  return from_lookup([](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (!v) return std::nullopt;
    return std::string(v);
  });
}

}  // namespace loom
