#include "job_environment.h"

#include <cstdlib>
#include <string>

namespace loom::cli {

train::JobEnvironment job_environment(const DistEnv& env) {
  train::JobEnvironment out;
  if (const char* spec = std::getenv("LOOM_FAULT_INJECT")) out.fault_inject = spec;
  out.restart_count = env.restart_count;
  out.van = ps::VanOptions::from_environment();
  return out;
}

bool shared_memory_allreduce_wanted() {
  const char* value = std::getenv("LOOM_SHM_ALLREDUCE");
  return !(value && std::string(value) == "0");
}

}  // namespace loom::cli
