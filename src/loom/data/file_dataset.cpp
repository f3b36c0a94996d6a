#include "loom/data/file_dataset.h"

#include <ATen/ATen.h>
#include <fmt/ranges.h>

#include "loom/core/error.h"

namespace loom::data {

namespace {

bool real_dtype(at::ScalarType t) { return at::isFloatingType(t) || at::isIntegralType(t, /*includeBool=*/true); }

std::string dtype_name(at::ScalarType t) { return std::string(c10::toString(t)); }

// A fresh, contiguous, in-memory copy of `t` as `dtype` (never a view of a mapping).
at::Tensor owned_copy(const at::Tensor& t, at::ScalarType dtype) {
  return t.to(t.options().dtype(dtype), /*non_blocking=*/false, /*copy=*/true).contiguous();
}

}  // namespace

Dataset make_file_dataset(const std::string& name, at::Tensor inputs, at::Tensor targets, bool allow_nan) {
  LOOM_CHECK(inputs.defined() && inputs.dim() >= 1, DataError,
             "{}: the inputs are a 0-d array (a scalar); expected one row per sample", name);
  LOOM_CHECK(targets.defined() && targets.dim() >= 1, DataError,
             "{}: the targets are a 0-d array (a scalar); expected one row per sample", name);
  LOOM_CHECK(real_dtype(inputs.scalar_type()), DataError,
             "{}: inputs of dtype {} are not supported (real numbers only)", name, dtype_name(inputs.scalar_type()));
  LOOM_CHECK(real_dtype(targets.scalar_type()), DataError,
             "{}: targets of dtype {} are not supported (real numbers only)", name, dtype_name(targets.scalar_type()));
  LOOM_CHECK(inputs.size(0) > 0, DataError, "{}: the inputs hold 0 rows (an empty array)", name);
  LOOM_CHECK(targets.dim() <= 2, DataError, "{}: the targets have shape [{}]; expected [N] or [N, K]", name,
             fmt::join(targets.sizes(), ", "));
  LOOM_CHECK(inputs.size(0) == targets.size(0), DataError, "{}: inputs have {} rows but targets {}", name,
             inputs.size(0), targets.size(0));
  const int64_t n = inputs.size(0);

  Dataset d;
  d.name = name;
  d.inputs = inputs.is_contiguous() ? inputs : inputs.contiguous();
  if (d.inputs.dim() == 1) d.inputs = d.inputs.view({n, 1});
  d.sample_shape = d.inputs.sizes().slice(1).vec();

  const bool integral = at::isIntegralType(targets.scalar_type(), /*includeBool=*/true);
  if (integral && (targets.dim() == 1 || targets.size(1) == 1)) {
    d.targets = owned_copy(targets.reshape({n}), at::kLong);
    const int64_t lo = d.targets.min().item<int64_t>();
    d.num_classes = lo < 0 ? 0 : d.targets.max().item<int64_t>() + 1;
  } else {
    d.targets = owned_copy(targets, at::kFloat);
    d.num_classes = 0;
    if (!allow_nan) {
      const at::Tensor rows = d.targets.view({n, -1}).isnan().any(1).nonzero();
      LOOM_CHECK(rows.size(0) == 0, DataError, "{}: row {} holds a NaN in its targets (pass --allow-nan to keep it)",
                 name, rows.size(0) > 0 ? rows[0][0].item<int64_t>() : 0);
    }
  }
  return d;
}

}  // namespace loom::data
