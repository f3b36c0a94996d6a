#include "loom/train/ps_server_process.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "loom/comm/context.h"
#include "loom/core/error.h"
#include "loom/core/log.h"
#include "loom/ps/job_layout.h"
#include "loom/ps/server.h"
#include "loom/ps/van_options.h"
#include "loom/train/checkpoint.h"
#include "loom/train/fault_injection.h"
#include "loom/train/train_config.h"

namespace loom::train {

void run_server_process(const TrainConfig& c, const DistEnv& env, const JobEnvironment& environment, int num_workers,
                        int server_index) {
  LOOM_CHECK(num_workers >= 1, ConfigError, "--strategy ps: the job has no workers ({} processes, {} servers)",
             env.world_size, c.servers);
  LOOM_CHECK(server_index >= 0 && server_index < c.servers, ConfigError,
             "parameter server index {} is outside --servers {}", server_index, c.servers);
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(c.timeout * 1000));
  ps::ServerOptions o;
  o.bind = "tcp://" + c.ps_host + ":0";
  o.server_index = server_index;
  o.num_workers = num_workers;
  o.consistency = ps::parse_consistency(c.consistency);
  o.staleness = static_cast<int>(c.staleness);
  o.optimizer = optimizer_options(c);
  o.timeout = timeout;
  o.dead_after = std::min(timeout / 2, std::chrono::milliseconds(30000));
  o.van = environment.van;  // the job's CURVE key, if any
  o.van.timeout = timeout;
  o.van.insecure = c.insecure;
  // No payload is larger than a slice: nor is any frame ZeroMQ accepts from anyone.
  o.slice_bytes = static_cast<int64_t>(c.ps_slice_mb * (1 << 20));  // recorded in, and checked against, checkpoints
  o.van.limits = ps::limits_for_slices(o.slice_bytes);
  if (!c.ps_load.empty()) o.load_path = c.ps_load + ".server" + std::to_string(server_index);
  // The only places this server writes: workers send names, never paths.
  if (!c.ps_save.empty()) o.save_dir = ps::split_save_prefix(c.ps_save).dir;
  o.checkpoint_dir = c.checkpoint_dir;
  if (!c.checkpoint_dir.empty() && (c.resume || c.resume_if_any)) {
    // The workers' rank 0 picks the same checkpoint: the newest complete one.
    const CheckpointDir dir(c.checkpoint_dir);
    if (const auto step = dir.newest_complete()) {
      o.load_path = fmt::format("{}/ps.server{}", dir.step_dir(*step), server_index);
      o.resume_clock = true;
      log::info("parameter server {}: resuming from {} after {} step(s)", server_index, dir.step_dir(*step), *step);
    }
  }
  // LOOM_FAULT_INJECT can name a server's job rank: it acts when a key reaches that step.
  if (const auto fault = fault_plan_for_attempt(environment.fault_inject, environment.restart_count);
      fault && fault->rank == env.rank) {
    o.after_update = [fault, rank = env.rank](int64_t version) { maybe_inject_fault(fault, rank, version); };
  }
  // Bound (or refused: no CURVE key off loopback) before waiting for the store.
  ps::Server server(o);
  comm::ContextOptions co;
  co.timeout = timeout;
  auto store = comm::Context::join_store(env, co);
  store->store_set(ps::server_store_key(server_index), server.endpoint());
  server.run();
  log::info("parameter server {}: all workers done after {} updates; steps pushed by each worker: {}", server_index,
            server.updates(), fmt::join(server.steps_pushed(), ", "));
}

}  // namespace loom::train
