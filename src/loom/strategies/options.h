// What each strategy is told, one options struct per strategy, every value already
// parsed (enums, bytes, durations). The CLI fills them from its flags in one place
// (train/strategy_options.h); a user's own program fills them directly. No strategy
// sees the CLI's TrainConfig.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "loom/dp/distributed_data_parallel.h"
#include "loom/models/registry.h"
#include "loom/pipeline/schedule.h"
#include "loom/pipeline/stage_split.h"
#include "loom/ps/server.h"

namespace loom::strategies {

enum class StrategyKind { single, allreduce, ps, pipeline, hybrid };
// The accepted names, in the order the help text lists them: the one list there is.
const std::vector<std::string>& strategy_names();
// A name from strategy_names(); anything else is a ConfigError naming --strategy.
StrategyKind parse_strategy(const std::string& name);
std::string strategy_name(StrategyKind kind);

// Settings every strategy that computes gradients shares.
struct StepOptions {
  models::LossKind loss = models::LossKind::cross_entropy;  // the training loss (models/registry.h)
  bool skip_nonfinite = false;                              // skip a step with non-finite gradients (nonfinite.h)
  double slowdown = 1.0;  // BENCHMARK AID: this rank sleeps (slowdown - 1) x its compute time
};

enum class SyncMode { grads, params };
const std::vector<std::string>& sync_mode_names();  // "grads", "params"
SyncMode parse_sync_mode(const std::string& name);  // ConfigError naming --sync

struct AllreduceOptions {
  SyncMode sync = SyncMode::grads;
  int64_t sync_every = 1;                  // --sync params: steps between model averages
  dp::DdpOptions ddp;                      // --sync grads (the strategy sets the tracer)
  int zero = 0;                            // ZeRO stage (--sync grads): 1 = dp::ZeroRedundancyOptimizer
  std::vector<double> zero_shard_weights;  // each rank's share of the parameters; empty: equal
};

struct PsOptions {
  int servers = 1;  // the store keys ps::server_store_key(0 .. servers-1) hold their endpoints
  ps::Consistency consistency = ps::Consistency::sync;
  int staleness = 2;              // ssp
  int64_t slice_bytes = 1 << 20;  // tensors larger than this are split (--ps-slice-mb's default)
  std::string save_name;          // non-empty: at the end, the servers save under this name
  std::chrono::milliseconds timeout{300000};
  ps::VanOptions van;  // transport and security (the job's CURVE key, if any)
};

// How the model is cut into stages: an explicit split, else a balance rule.
struct SplitOptions {
  std::string split;  // "4,3,2": layers per stage; empty: by `balance`
  pipeline::Balance balance = pipeline::Balance::params;
  int64_t profile_rows = 1;  // Balance::time: rows of the sample batch profiled (one micro-batch)
};

// Pipeline and hybrid: a pipeline is a hybrid mesh with one replica.
struct HybridOptions {
  int dp = 1;  // replicas
  int pp = 0;  // stages per replica; 0: every rank of the job is one stage (dp must be 1)
  int micro_batches = 4;
  pipeline::ScheduleKind schedule = pipeline::ScheduleKind::one_f_one_b;
  SplitOptions split;
  dp::DdpOptions ddp;  // across replicas (dp > 1)
  int zero = 0;        // ZeRO stage across the replicas of each stage (dp > 1): 1 = sharded optimizer
  std::vector<double> zero_shard_weights;  // each replica's share of its stage's parameters; empty: equal
};

struct StrategyOptions {
  StrategyKind kind = StrategyKind::single;
  StepOptions step;
  AllreduceOptions allreduce;
  PsOptions ps;
  HybridOptions hybrid;  // pipeline and hybrid
};

}  // namespace loom::strategies
