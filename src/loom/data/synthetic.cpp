#include "loom/data/dataset.h"

#include <ATen/ATen.h>

#include <cmath>
#include <vector>

#include "loom/core/error.h"
#include "loom/data/rng.h"

namespace loom::data {

namespace {

// Rng streams derived from the user's seed, one per purpose. Far from the small stream
// numbers epoch_permutation uses (the epoch), so the two never share a sequence.
constexpr uint64_t kPrototypeStream = 0x73796e7468700000ULL;  // "synthp"
constexpr uint64_t kTrainStream = 0x73796e7468740000ULL;      // "syntht"
constexpr uint64_t kTestStream = 0x73796e7468760000ULL;       // "synthv"

void validate(const SyntheticOptions& o) {
  LOOM_CHECK(o.num_samples > 0, ConfigError, "synthetic data: num_samples must be positive, got {}", o.num_samples);
  LOOM_CHECK(o.num_test_samples > 0, ConfigError, "synthetic data: num_test_samples must be positive, got {}",
             o.num_test_samples);
  LOOM_CHECK(o.num_classes >= 2, ConfigError, "synthetic data: num_classes must be at least 2, got {}", o.num_classes);
  LOOM_CHECK(!o.sample_shape.empty(), ConfigError, "synthetic data: sample_shape must have at least one dimension");
  for (const int64_t d : o.sample_shape) {
    LOOM_CHECK(d > 0, ConfigError, "synthetic data: sample_shape dimensions must be positive, got {}", d);
  }
  LOOM_CHECK(std::isfinite(o.noise) && o.noise >= 0, ConfigError,
             "synthetic data: noise must be a finite number >= 0, got {}", o.noise);
}

}  // namespace

Dataset make_synthetic(const SyntheticOptions& options, Split split) {
  validate(options);
  int64_t dim = 1;
  for (const int64_t d : options.sample_shape) dim *= d;
  const int64_t classes = options.num_classes;
  const int64_t n = split == Split::train ? options.num_samples : options.num_test_samples;

  std::vector<float> prototypes(static_cast<size_t>(classes * dim));
  Rng(options.seed, kPrototypeStream).fill_normal(prototypes.data(), classes * dim);

  std::vector<int64_t> input_shape = {n};
  input_shape.insert(input_shape.end(), options.sample_shape.begin(), options.sample_shape.end());
  at::Tensor inputs = at::empty(input_shape, at::TensorOptions().dtype(at::kFloat));
  at::Tensor targets = at::empty({n}, at::TensorOptions().dtype(at::kLong));
  float* x = inputs.data_ptr<float>();
  int64_t* y = targets.data_ptr<int64_t>();

  Rng rng(options.seed, split == Split::train ? kTrainStream : kTestStream);
  const float noise = options.noise;
  const float scale = 1.0f / std::sqrt(1.0f + noise * noise);
  for (int64_t i = 0; i < n; ++i) {
    const auto label = static_cast<int64_t>(rng.below(static_cast<uint64_t>(classes)));
    y[i] = label;
    float* row = x + i * dim;
    const float* prototype = prototypes.data() + label * dim;
    rng.fill_normal(row, dim);
    for (int64_t k = 0; k < dim; ++k) row[k] = (prototype[k] + noise * row[k]) * scale;
  }

  Dataset dataset;
  dataset.inputs = std::move(inputs);
  dataset.targets = std::move(targets);
  dataset.name = "synthetic";
  dataset.sample_shape = options.sample_shape;
  dataset.num_classes = classes;
  return dataset;
}

}  // namespace loom::data
