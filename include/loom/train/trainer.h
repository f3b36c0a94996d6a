// Trainer: the one training loop every strategy shares.
//
// It owns the schedule (epochs / steps), the global batch order (DESIGN.md: one seeded
// permutation per epoch, step t takes slice [t*B, (t+1)*B), split across the data-
// parallel ranks), evaluation on rank 0, metrics, tracing and --save / --init. The
// strategy named by the config turns each global batch into one update.
//
// run() is collective: call it on every rank of the job with the same config.
#pragma once

#include <memory>

#include "loom/ps/van_options.h"
#include "loom/train/metrics.h"
#include "loom/train/train_config.h"

namespace loom::comm {
class Context;
}
namespace loom::strategies {
class Strategy;  // src/loom/strategies/strategy.h (not installed)
}

namespace loom::train {

// What a training process learns from its environment rather than from its flags. Only
// entry points read environment variables (the CLI: tools/loom/job_environment.cpp); a
// program that builds a Trainer sets what it needs here or keeps the defaults.
struct JobEnvironment {
  // LOOM_FAULT_INJECT: "ACTION:RANK:STEP[:always]", for tests and drills only
  // (src/loom/train/fault_injection.h); "" = none.
  std::string fault_inject;
  // LOOM_RESTART_COUNT: which attempt of the job this is (0 = the first; the launcher
  // counts restarts). A fault plan fires on the first attempt only, unless ":always".
  int restart_count = 0;
  // The parameter-server transport's token and CURVE key (VanOptions::from_environment).
  ps::VanOptions van;
};

class Trainer {
 public:
  // `context` may be null for a one-process job (--strategy single).
  Trainer(TrainConfig config, std::shared_ptr<comm::Context> context, JobEnvironment environment = {});
  // Drives `strategy` instead of the one config.strategy names (tests drive a fake one
  // through the loop; callers need src/loom/strategies/strategy.h).
  Trainer(TrainConfig config, std::shared_ptr<comm::Context> context, std::unique_ptr<strategies::Strategy> strategy,
          JobEnvironment environment = {});
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;
  // Trains, evaluates, writes --metrics / --trace / --save on rank 0, and returns the
  // summary (on every rank; test fields are filled on rank 0 only).
  Summary run();

 private:
  TrainConfig config_;
  std::shared_ptr<comm::Context> context_;
  std::unique_ptr<strategies::Strategy> strategy_;
  JobEnvironment environment_;
};

}  // namespace loom::train
