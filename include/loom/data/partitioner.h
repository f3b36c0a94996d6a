// Partitioner: which samples each data-parallel worker trains on at each step.
//
// Schemes (PartitionOptions::scheme; `--partition` on the CLI):
//  * strided (default): the global-batch contract of DESIGN.md. Each epoch has one seeded
//    permutation (epoch_permutation); step t's global batch is its slice [t*B, (t+1)*B),
//    cut into W equal contiguous parts (B % W == 0 is required). A distributed run sees
//    exactly the batches a single process sees.
//  * random: the data set is divided once, by a seeded random assignment, into W fixed
//    shards whose sizes differ by at most one. A worker reads only its shard for the whole
//    run and reshuffles it each epoch. Each worker takes b_r samples per step (the global
//    batch apportioned equally, so sizes differ by at most one).
//  * proportional: like strided, but step t's global batch is cut into parts proportional
//    to `weights` (largest-remainder apportionment: parts sum to B exactly, each within one
//    sample of its ideal share, equal weights give equal parts). Every sample is used
//    exactly once per epoch. Weights may change between steps (auto re-weighting).
//
// Every rank gets the same number of steps per epoch, so no rank waits forever in a
// collective. With drop_last (default) the samples that do not fill a whole step are
// skipped for that epoch; without it (random scheme only) a shard that runs out wraps
// around to its own first samples so every sample is seen at least once per epoch.
//
// Determinism: indices() depends only on the options, the rank, the epoch and the step
// (and on set_weights() calls), identically in every process. Not thread-safe (it caches
// the current epoch's permutation).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace loom::data {

enum class Scheme { strided, random, proportional };
// "strided" | "random" | "proportional"; else a ConfigError naming `flag`.
Scheme parse_scheme(const std::string& name, const char* flag = "partition");
const char* scheme_name(Scheme scheme);

struct PartitionOptions {
  Scheme scheme = Scheme::strided;
  int world_size = 1;       // data-parallel workers
  int64_t num_samples = 0;  // training set size N
  int64_t batch_size = 1;   // GLOBAL batch per step B
  uint64_t seed = 0;
  std::vector<double> weights;  // proportional: one per worker, >= 0; empty = equal
  bool drop_last = true;
};

class Partitioner {
 public:
  virtual ~Partitioner() = default;
  const PartitionOptions& options() const { return options_; }

  // Steps per epoch, the same for every rank.
  virtual int64_t steps_per_epoch() const = 0;
  // The sample indices `rank` trains on at `step` (0-based, < steps_per_epoch()) of `epoch`.
  virtual std::vector<int64_t> indices(int rank, int64_t epoch, int64_t step) = 0;
  // How many samples every rank gets at that step; they sum to that step's global batch.
  virtual std::vector<int64_t> part_sizes(int64_t epoch, int64_t step) = 0;
  // Proportional scheme only: use these weights from the next call on (ConfigError for
  // the other schemes, or for invalid weights).
  virtual void set_weights(const std::vector<double>& weights);

 protected:
  explicit Partitioner(PartitionOptions options) : options_(std::move(options)) {}
  void check_position(int rank, int64_t epoch, int64_t step) const;
  PartitionOptions options_;
};

// Validates the options (ConfigError naming the flag) and builds the scheme.
std::unique_ptr<Partitioner> make_partitioner(const PartitionOptions& options);

// Parses "3,1,1" into weights; "" gives {}; ConfigError on anything else.
std::vector<double> parse_weights(const std::string& text);

// ---- The global batch order -------------------------------------------------
// The global-batch order (contract, DESIGN.md "Equivalence"): each epoch's order of the
// training set is one seeded permutation, the same in every process, and step t's
// global batch is its slice [t*B, (t+1)*B). Every strategy and every rank computes it
// with this function, so it must never depend on libtorch, the platform or the number of
// workers. Changing the algorithm changes every run's results: do it only on purpose
// (tests/unit/data/permutation_test.cpp pins golden values).
//
// Algorithm: rng = Rng(seed, stream = epoch) (see rng.h); p = [0, 1, ..., n-1];
// for i = n-1 down to 1: j = rng.below(i + 1); swap(p[i], p[j]).
// A Python transcription that reproduces it exactly:
//
//   M = (1 << 64) - 1
//   def mix64(z):
//       z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
//       z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
//       return z ^ (z >> 31)
//   def rotl(x, k): return ((x << k) | (x >> (64 - k))) & M
//   class Rng:
//       def __init__(self, seed, stream=0):
//           x = mix64(seed) ^ stream
//           self.s = []
//           for _ in range(4):
//               x = (x + 0x9E3779B97F4A7C15) & M
//               self.s.append(mix64(x))
//       def next(self):
//           s = self.s
//           r = (rotl((s[1] * 5) & M, 7) * 9) & M
//           t = (s[1] << 17) & M
//           s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]
//           s[2] ^= t; s[3] = rotl(s[3], 45)
//           return r
//       def below(self, n):
//           m = self.next() * n
//           if (m & M) < n:
//               threshold = ((1 << 64) - n) % n
//               while (m & M) < threshold:
//                   m = self.next() * n
//           return m >> 64
//   def epoch_permutation(n, seed, epoch):
//       rng, p = Rng(seed, epoch), list(range(n))
//       for i in range(n - 1, 0, -1):
//           j = rng.below(i + 1)
//           p[i], p[j] = p[j], p[i]
//       return p
//
// Thread-safety: pure function.
// A uniformly random permutation of [0, n) determined by (seed, epoch) alone.
// Requires n >= 0 and epoch >= 0 (throws loom::Error otherwise).
std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch);

}  // namespace loom::data
