// Training checkpoints (--checkpoint-dir DIR --checkpoint-every N, --resume).
//
// On disk, one directory per checkpoint, named by the number of steps done:
//
//   DIR/step-00000120/rank-00000.ckpt   every rank's own part (its parameters and buffers,
//   DIR/step-00000120/rank-00001.ckpt   its optimizer state, the RNG state, the run's
//   ...                                 position and settings), each self-checking
//   DIR/step-00000120/COMPLETE          written by rank 0 once every part is durable
//
// A part file is "LOOMCKPT", a little-endian u64 payload length, the payload (a pickled
// dict) and the payload's CRC-32 as a u64: a truncated file, a foreign file and one
// flipped byte are all detected, and reported as a CheckpointError naming the file.
// Every file is written atomically (core/atomic_file.h). A checkpoint counts only once
// its COMPLETE marker exists; the previous checkpoint is removed only after that, so a
// crash at any moment leaves at least one complete checkpoint (or none yet).
//
// Nothing here communicates: the Trainer orders the writes with barriers (trainer.cpp).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "loom/train/model_io.h"

namespace loom::train {

// The run's identity and position, stored in every part and checked on resume.
struct CheckpointMeta {
  int64_t step = 0;          // steps done: training resumes at this 0-based step
  int rank = 0;              // the job rank that wrote the part
  int world_size = 1;        // processes that train (not parameter servers)
  bool replicated = false;   // every data rank holds the same state (allreduce --sync grads)
  bool rank0_alone = false;  // only rank 0 wrote a part (asynchronous parameter-server workers)
  // Every rank holds the same model and its own range of the optimizer state (allreduce
  // --zero): a run with another size reads every part's optimizer state, resharded.
  bool reshardable = false;
  std::string strategy, model, data, optimizer, partition, layout;
  int64_t width = 0, depth = 0, batch_size = 0, seed = 0, dp = 1, pp = 1;
  std::vector<double> weights;  // the partitioner's current proportional weights
};

// One rank's part of a checkpoint.
struct CheckpointPart {
  CheckpointMeta meta;
  StateDict model;        // the parameters and buffers this rank keeps
  std::string optimizer;  // the optimizer's torch::serialize archive
  at::Tensor rng;         // the default CPU generator's state
  std::string source;     // the file it was read from (for messages)
};

// Serialises `part` and writes it atomically to `path`.
void write_checkpoint_part(const std::string& path, const CheckpointPart& part);
// Reads and verifies a part: CheckpointError naming `path` if it is missing, truncated,
// not a checkpoint, or fails its checksum.
CheckpointPart read_checkpoint_part(const std::string& path);

// The layout of one checkpoint directory.
class CheckpointDir {
 public:
  explicit CheckpointDir(std::string dir) : dir_(std::move(dir)) {}
  const std::string& path() const { return dir_; }
  std::string step_dir(int64_t step) const;
  std::string part_path(int64_t step, int rank) const;
  // Creates DIR/step-N (and DIR). Error naming the directory if it cannot.
  void prepare(int64_t step) const;
  // Writes DIR/step-N/COMPLETE (atomically): the checkpoint at `step` is whole.
  void mark_complete(int64_t step, int world_size) const;
  // The newest step with a COMPLETE marker, if any (incomplete directories are ignored).
  std::optional<int64_t> newest_complete() const;
  // Removes every checkpoint directory older than `step` (rank 0), or only this rank's
  // parts in them (other ranks: their files may live on another host).
  void remove_older_than(int64_t step, int rank) const;

 private:
  std::string dir_;
};

// Why `meta` cannot be resumed by a run with `expected`'s settings ("" when it can):
// another strategy, model, data set, batch, seed, optimizer, partitioning or layout, or
// another world size for state that is neither replicated nor reshardable.
std::string checkpoint_mismatch(const CheckpointMeta& meta, const CheckpointMeta& expected);

}  // namespace loom::train
