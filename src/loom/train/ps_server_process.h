// A parameter-server process: joins the job's rendezvous store (as a client, outside the
// workers' process group), binds its ROUTER on --ps-host, announces the endpoint under
// ps::server_store_key(index) (ps/job_layout.h) and serves until every worker is done.
//
// `loom train --strategy ps --nproc W --servers S` runs it on the last S ranks of the
// job it launches; `loom ps-server` runs one on its own (multi-machine jobs).
#pragma once

#include "loom/core/dist_env.h"
#include "loom/train/train_config.h"
#include "loom/train/trainer.h"

namespace loom::train {

// Blocks until the workers are done. Throws loom errors (CommError, CheckpointError, ...).
// `environment` gives the transport's CURVE key and the fault plan (JobEnvironment).
void run_server_process(const TrainConfig& config, const DistEnv& env, const JobEnvironment& environment,
                        int num_workers, int server_index);

}  // namespace loom::train
