// An in-memory classification data set and the batches drawn from it.
//
// Ownership: a Dataset owns its tensors (refcounted at::Tensor; copying a Dataset is
// cheap and shares the storage). Batches are fresh tensors, never views into the set.
// Thread-safety: a Dataset is immutable after loading, so concurrent gather() calls on
// the same Dataset are safe.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace loom::data {

enum class Split { train, test };
const char* to_string(Split split);  // "train" | "test"

struct Dataset {
  at::Tensor inputs;                  // float32 [N, sample_shape...], contiguous, on the CPU
  at::Tensor targets;                 // int64 [N] class indices in [0, num_classes), contiguous
  std::string name;                   // e.g. "fashion-mnist", "synthetic"
  std::vector<int64_t> sample_shape;  // one input's shape, e.g. {1, 28, 28}
  int64_t num_classes = 0;

  int64_t size() const;  // N; 0 for a default-constructed Dataset
};

struct Batch {
  at::Tensor inputs;   // float32 [B, sample_shape...], contiguous
  at::Tensor targets;  // int64 [B]

  int64_t size() const;  // B
};

// The rows `indices` of the data set, in that order (repeats allowed). An index outside
// [0, size()) throws loom::DataError naming it and the data set.
Batch gather(const Dataset& dataset, const std::vector<int64_t>& indices);
// Same, with a 1-D integer tensor of indices (any integer dtype, CPU).
Batch gather(const Dataset& dataset, const at::Tensor& indices);

// ---- Synthetic data ---------------------------------------------------------
// A seeded synthetic classification data set that small models learn to high accuracy
// within an epoch: for tests, benchmarks and runs without the Fashion-MNIST files.
//
// Distribution: each class c has a prototype p_c with i.i.d. normal(0, 1) entries; a
// sample of class c (c uniform in [0, num_classes)) is (p_c + noise * e) /
// sqrt(1 + noise^2) with e i.i.d. normal(0, 1), so every input element has mean 0 and
// variance 1. The prototypes depend on the seed only; the train and test splits are
// different draws (different derived streams) from the same distribution.
//
// Determinism: a function of (options, split) alone, drawn with loom's own Rng (rng.h),
// never libtorch's global generator; the same on every rank.
// Result: inputs float32 [N, sample_shape...], targets int64 [N], name "synthetic".
// Thread-safety: reentrant.
struct SyntheticOptions {
  int64_t num_samples = 8192;       // size of the train split
  int64_t num_test_samples = 2048;  // size of the test split
  std::vector<int64_t> sample_shape = {1, 28, 28};
  int64_t num_classes = 10;
  uint64_t seed = 0;
  // Noise-to-signal ratio per element: the task's difficulty. With the default sizes,
  // class means fit on the train split classify about 97% of the test split at the
  // default 7 (a linear model after one epoch does about as well), 100% at 5 or less,
  // 83% at 10, 39% at 20. The default leaves headroom to notice a training regression.
  float noise = 7.0f;
};

// Throws loom::ConfigError for options that cannot describe a data set (non-positive
// sizes or dimensions, fewer than 2 classes, negative or non-finite noise).
Dataset make_synthetic(const SyntheticOptions& options, Split split = Split::train);

// ---- Data sets by name ------------------------------------------------------
// The one place that maps a data-set name (the CLI's --data, the config's data.name) to
// its loader.
// Thread-safety: reentrant.
struct DataOptions {
  std::string name = "fashion-mnist";  // one of dataset_names()
  std::string dir;                     // fashion-mnist's files; empty: the default dir
  SyntheticOptions synthetic;          // used when name == "synthetic"; dir is ignored
};

// The known names, in a stable order: {"fashion-mnist", "synthetic"}.
std::vector<std::string> dataset_names();

// An unknown name throws loom::ConfigError listing the known names; loading errors are
// the loaders' own (loom::DataError, loom::ConfigError).
Dataset load_dataset(const DataOptions& options, Split split);

}  // namespace loom::data
