#include "loom/launch/worker_env.h"

#include <unordered_map>

extern char** environ;

namespace loom::launch {

EnvVars worker_env(const LaunchOptions& options, const WorkerIdentity& worker) {
  const int rank = options.global_rank(worker.local_rank);
  EnvVars env = {
      {"RANK", std::to_string(rank)},
      {"WORLD_SIZE", std::to_string(options.world_size())},
      {"LOCAL_RANK", std::to_string(worker.local_rank)},
      {"LOCAL_WORLD_SIZE", std::to_string(options.nproc)},
      {"GROUP_RANK", std::to_string(options.node_rank)},
      {"NODE_RANK", std::to_string(options.node_rank)},
      {"GROUP_WORLD_SIZE", std::to_string(options.nnodes)},
      {"MASTER_ADDR", options.master_addr},
      {"MASTER_PORT", std::to_string(worker.master_port)},
      {"LOOM_RESTART_COUNT", std::to_string(worker.restart_count)},
      {"LOOM_MAX_RESTARTS", std::to_string(options.max_restarts)},
      {"LOOM_LAUNCHED", "1"},
  };
  if (options.extra_env) {
    for (auto& entry : options.extra_env(rank)) env.push_back(std::move(entry));
  }
  return env;
}

std::vector<std::string> merge_environment(const std::vector<std::string>& base, const EnvVars& overrides) {
  std::vector<std::string> out = base;
  std::unordered_map<std::string, std::size_t> index;  // name -> position in out
  for (std::size_t i = 0; i < out.size(); ++i) {
    index.emplace(out[i].substr(0, out[i].find('=')), i);
  }
  for (const auto& [name, value] : overrides) {
    std::string entry = name + "=" + value;
    if (auto it = index.find(name); it != index.end()) {
      out[it->second] = std::move(entry);
    } else {
      index.emplace(name, out.size());
      out.push_back(std::move(entry));
    }
  }
  return out;
}

std::vector<std::string> current_environment() {
  std::vector<std::string> out;
  for (char** entry = environ; entry && *entry; ++entry) out.emplace_back(*entry);
  return out;
}

}  // namespace loom::launch
