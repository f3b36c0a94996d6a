#include "loom/data/dataset.h"

#include <ATen/ATen.h>

#include "loom/core/error.h"

namespace loom::data {

const char* to_string(Split split) { return split == Split::train ? "train" : "test"; }

int64_t Dataset::size() const { return targets.defined() ? targets.size(0) : 0; }

int64_t Batch::size() const { return targets.defined() ? targets.size(0) : 0; }

namespace {

Batch select_rows(const Dataset& dataset, const at::Tensor& index) {
  LOOM_CHECK(dataset.inputs.defined() && dataset.targets.defined(), DataError,
             "gather: data set '{}' is empty (not loaded)", dataset.name);
  return Batch{dataset.inputs.index_select(0, index), dataset.targets.index_select(0, index)};
}

}  // namespace

Batch gather(const Dataset& dataset, const std::vector<int64_t>& indices) {
  const int64_t n = dataset.size();
  for (const int64_t i : indices) {
    LOOM_CHECK(i >= 0 && i < n, DataError, "gather: index {} is out of range for data set '{}' of {} samples", i,
               dataset.name, n);
  }
  // A non-owning view of `indices`; index_select copies the rows before returning.
  const at::Tensor index = at::from_blob(const_cast<int64_t*>(indices.data()), {static_cast<int64_t>(indices.size())},
                                         at::TensorOptions().dtype(at::kLong));
  return select_rows(dataset, index);
}

Batch gather(const Dataset& dataset, const at::Tensor& indices) {
  LOOM_CHECK(indices.defined() && indices.dim() == 1, DataError,
             "gather: indices must be a 1-D tensor, got {} dimensions", indices.defined() ? indices.dim() : 0);
  LOOM_CHECK(at::isIntegralType(indices.scalar_type(), /*includeBool=*/false), DataError,
             "gather: indices must have an integer dtype, got {}", std::string(c10::toString(indices.scalar_type())));
  const at::Tensor index = indices.to(at::kLong).contiguous();
  const int64_t n = dataset.size();
  if (index.numel() > 0) {
    const int64_t lo = index.min().item<int64_t>();
    const int64_t hi = index.max().item<int64_t>();
    const int64_t bad = lo < 0 ? lo : hi;
    LOOM_CHECK(lo >= 0 && hi < n, DataError, "gather: index {} is out of range for data set '{}' of {} samples", bad,
               dataset.name, n);
  }
  return select_rows(dataset, index);
}

}  // namespace loom::data
