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
#pragma once

#include <cstdint>
#include <vector>

#include "loom/data/dataset.h"

namespace loom::data {

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

}  // namespace loom::data
