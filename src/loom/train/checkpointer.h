// Checkpointer: the Trainer's side of checkpoints (--checkpoint-dir, --checkpoint-every,
// --resume), on top of the on-disk format of checkpoint.h.
//
// Saving (collective over every training rank): each rank writes its own part; a barrier;
// rank 0 writes COMPLETE; a barrier; each rank removes its parts of older checkpoints.
// A crash anywhere leaves the previous complete checkpoint in place.
//
// Resuming (collective): rank 0 picks the newest complete checkpoint and tells everyone;
// each rank reads its own part (or rank 0's, when the state is replicated and the job
// has another size), checks that it belongs to this run (strategy, model, data, batch,
// seed, optimizer, partitioning, mesh, world size, stage split) and restores its module,
// optimizer, RNG and partitioner weights. Training continues at the saved step, so a
// synchronous run ends where the uninterrupted run ends.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>

#include "loom/train/checkpoint.h"

namespace loom::comm {
class Context;
}
namespace loom::data {
class Partitioner;
}

namespace loom::strategies {
struct LocalState;
class Strategy;
}  // namespace loom::strategies

namespace loom::train {

struct TrainConfig;

class Checkpointer {
 public:
  // `context` is null for a one-process job.
  Checkpointer(const TrainConfig& config, std::shared_ptr<comm::Context> context);
  bool enabled() const { return enabled_; }

  // Collective. When resuming (--resume, or a restart with a checkpoint on disk), reads
  // this rank's part of the newest complete checkpoint and checks the run's settings
  // against it. nullopt: start from step 0. --resume with no checkpoint is an error.
  std::optional<CheckpointPart> load_for_resume();
  // After the strategy's setup: checks `part` against the strategy's layout and
  // replication, then restores the state into `local`, the RNG and the partitioner.
  void restore(const CheckpointPart& part, const strategies::LocalState& local, data::Partitioner& partitioner) const;
  // Collective: saves the state after `steps_done` steps (`local` is the strategy's
  // local_state(); its services save theirs through checkpoint_services()).
  void save(int64_t steps_done, strategies::Strategy& strategy, const strategies::LocalState& local,
            const data::Partitioner& partitioner) const;

 private:
  CheckpointMeta expected_meta(const strategies::LocalState* local) const;
  void barrier() const;

  const TrainConfig& config_;
  std::shared_ptr<comm::Context> context_;
  CheckpointDir dir_;
  bool enabled_ = false;
  int rank_ = 0;
  int world_ = 1;
};

}  // namespace loom::train
