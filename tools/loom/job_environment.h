// The environment variables a `loom` process reads, all here, once, at start-up; the
// library below receives them as options (DESIGN.md: environment only at entry points).
#pragma once

#include "loom/comm/context.h"
#include "loom/core/dist_env.h"
#include "loom/train/trainer.h"

namespace loom::cli {

// LOOM_FAULT_INJECT, the restart count (from `env`, i.e. LOOM_RESTART_COUNT) and the
// parameter server's LOOM_PS_TOKEN / CURVE key.
train::JobEnvironment job_environment(const DistEnv& env);

// LOOM_SHM_ALLREDUCE=0 keeps every collective on Gloo (ContextOptions::shared_memory).
bool shared_memory_allreduce_wanted();

}  // namespace loom::cli
