// with_targets(): the targets a loss needs (dataset.h). Targets are small, so the
// conversions scan them whole; inputs are never touched.
#include <ATen/ATen.h>

#include "loom/core/error.h"
#include "loom/data/dataset.h"

namespace loom::data {

namespace {

// The first row (counting from 0) where `bad` (bool [N]) is true, or -1.
int64_t first_row(const at::Tensor& bad) {
  const at::Tensor rows = bad.nonzero();
  return rows.size(0) > 0 ? rows[0][0].item<int64_t>() : -1;
}

std::string value_text(const at::Tensor& targets, int64_t row) {
  if (targets.scalar_type() == at::kFloat) return fmt::format("{}", targets[row].item<float>());
  if (at::isFloatingType(targets.scalar_type())) return fmt::format("{}", targets[row].item<double>());
  return fmt::format("{}", targets[row].item<int64_t>());
}

Dataset to_classes(Dataset d) {
  const int64_t n = d.size();
  LOOM_CHECK(d.targets.dim() == 1, DataError,
             "{}: the targets are [{}, {}], not one class index per row (use --loss mse or bce for [N, K] targets)",
             d.name, n, d.target_width());
  if (n == 0) {
    d.targets = d.targets.to(at::kLong);
    return d;
  }
  if (at::isFloatingType(d.targets.scalar_type())) {
    const at::Tensor t = d.targets;
    // Whole numbers in [0, 2^24): beyond that float32 holds no longer every integer.
    const int64_t row = first_row(
        t.isfinite().logical_not().logical_or(t.lt(0)).logical_or(t.ge(16777216.0)).logical_or(t.floor().ne(t)));
    LOOM_CHECK(row < 0, DataError,
               "{}: target of row {} is {}, not a class index (use --loss mse for real-valued targets)", d.name, row,
               value_text(t, row));
  }
  at::Tensor classes = d.targets.to(at::kLong).contiguous();
  const int64_t row = first_row(classes.lt(0));
  LOOM_CHECK(row < 0, DataError,
             "{}: target of row {} is {}, not a class index (use --loss mse for real-valued targets)", d.name, row,
             value_text(d.targets, row < 0 ? 0 : row));
  d.num_classes = classes.max().item<int64_t>() + 1;
  d.targets = std::move(classes);
  return d;
}

Dataset to_values(Dataset d) {
  d.targets = d.targets.to(at::kFloat).contiguous();
  d.num_classes = 0;
  return d;
}

}  // namespace

Dataset with_targets(Dataset dataset, TargetKind kind) {
  if (!dataset.targets.defined()) return dataset;
  return kind == TargetKind::classes ? to_classes(std::move(dataset)) : to_values(std::move(dataset));
}

}  // namespace loom::data
