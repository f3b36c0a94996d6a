#include "loom/data/dataset.h"
#include <algorithm>

#include <ATen/ATen.h>
#include <sys/mman.h>
#include <unistd.h>

#include "loom/core/error.h"

namespace loom::data {

const char* to_string(Split split) { return split == Split::train ? "train" : "test"; }

int64_t Dataset::size() const { return targets.defined() ? targets.size(0) : 0; }

int64_t Dataset::target_width() const {
  if (!targets.defined()) return 0;
  return targets.dim() >= 2 ? targets.size(1) : 1;
}

int64_t Batch::size() const { return targets.defined() ? targets.size(0) : 0; }

namespace {

void check_loaded(const Dataset& dataset, const char* what) {
  LOOM_CHECK(dataset.inputs.defined() && dataset.targets.defined(), DataError,
             "{}: data set '{}' is empty (not loaded)", what, dataset.name);
}

// Throws when a row of `inputs` (the float32 batch) holds a NaN; `row_of(k)` maps the
// batch's row k to the set's row for the message.
template <typename RowOf>
void check_nan(const Dataset& dataset, const at::Tensor& inputs, RowOf row_of) {
  if (!dataset.reject_nan || !at::isFloatingType(dataset.inputs.scalar_type()) || inputs.numel() == 0) return;
  const at::Tensor bad = inputs.view({inputs.size(0), -1}).isnan().any(1);
  if (!bad.any().item<bool>()) return;
  const int64_t k = bad.nonzero()[0][0].item<int64_t>();
  LOOM_THROW(DataError, "{}: row {} holds a NaN in its inputs (pass --allow-nan to train on it)", dataset.name,
             row_of(k));
}

// A float32 batch of the rows `rows` (already read from the set: a fresh tensor, or a
// view of the set when `fresh` is false).
at::Tensor as_float(const at::Tensor& rows, bool fresh) {
  if (rows.scalar_type() != at::kFloat) return rows.to(at::kFloat).contiguous();
  return fresh ? rows.contiguous() : rows.clone(at::MemoryFormat::Contiguous);
}

Batch select_rows(const Dataset& dataset, const at::Tensor& index) {
  check_loaded(dataset, "gather");
  // index_select reads only the selected rows (a mapped set faults in only their pages).
  Batch b{as_float(dataset.inputs.index_select(0, index), /*fresh=*/true), dataset.targets.index_select(0, index)};
  const int64_t* at = index.data_ptr<int64_t>();
  check_nan(dataset, b.inputs, [at](int64_t k) { return at[k]; });
  return b;
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

Batch slice(const Dataset& dataset, int64_t start, int64_t count) {
  check_loaded(dataset, "slice");
  const int64_t n = dataset.size();
  LOOM_CHECK(start >= 0 && count >= 0 && start <= n && count <= n - start, DataError,
             "slice: rows [{}, {}) are out of range for data set '{}' of {} samples", start, start + count,
             dataset.name, n);
  Batch b{as_float(dataset.inputs.narrow(0, start, count), /*fresh=*/false),
          dataset.targets.narrow(0, start, count).clone(at::MemoryFormat::Contiguous)};
  check_nan(dataset, b.inputs, [start](int64_t k) { return start + k; });
  return b;
}

}  // namespace loom::data

namespace loom::data {

namespace {
struct InputPages {
  uintptr_t base = 0;       // the inputs' first byte
  uintptr_t row_bytes = 0;  // 0: not a memory-mapped set with rows
  uintptr_t page = 0;
};

InputPages input_pages(const Dataset& dataset) {
  const int64_t n = dataset.size();
  if (!dataset.memory_mapped || n == 0 || !dataset.inputs.defined()) return {};
  static const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  return {reinterpret_cast<uintptr_t>(dataset.inputs.data_ptr()),
          static_cast<uintptr_t>(dataset.inputs.numel() / n * dataset.inputs.element_size()), page};
}

// Advice only: a failure (e.g. memory that is not a file mapping) costs nothing but the hint.
void will_need(uintptr_t begin, uintptr_t end, uintptr_t page) {
  const uintptr_t first_page = begin & ~(page - 1);
  ::madvise(reinterpret_cast<void*>(first_page), end - first_page, MADV_WILLNEED);
}
}  // namespace

void prefetch(const Dataset& dataset, const std::vector<int64_t>& indices) {
  const auto p = input_pages(dataset);
  if (p.row_bytes == 0) return;
  const int64_t n = dataset.size();
  for (const int64_t i : indices) {
    if (i < 0 || i >= n) continue;
    const uintptr_t begin = p.base + static_cast<uintptr_t>(i) * p.row_bytes;
    will_need(begin, begin + p.row_bytes, p.page);
  }
}

void prefetch_all(const Dataset& dataset) {
  const auto p = input_pages(dataset);
  if (p.row_bytes == 0) return;
  // One call reads at most 8 MiB ahead here (kernel 6.18 caps a WILLNEED range: a call
  // over the whole file read its first 8 MiB, seen with fincore; a call of 8 MiB + one
  // page missed that page), so the file is asked for in 4 MiB pieces, page-aligned and
  // not overlapping; each call only queues the reads.
  constexpr uintptr_t kPiece = uintptr_t{4} << 20;
  const uintptr_t end = p.base + static_cast<uintptr_t>(dataset.size()) * p.row_bytes;
  for (uintptr_t begin = p.base & ~(p.page - 1); begin < end; begin += kPiece) {
    will_need(begin, std::min(end, begin + kPiece), p.page);
  }
}

double page_coverage(const Dataset& dataset, const std::vector<int64_t>& indices) {
  const auto p = input_pages(dataset);
  if (p.row_bytes == 0) return 0.0;
  const int64_t n = dataset.size();
  const uintptr_t first = p.base / p.page;
  const uintptr_t pages = (p.base + static_cast<uintptr_t>(n) * p.row_bytes - 1) / p.page - first + 1;
  std::vector<bool> touched(pages, false);
  uintptr_t count = 0;
  for (const int64_t i : indices) {
    if (i < 0 || i >= n) continue;
    const uintptr_t begin = p.base + static_cast<uintptr_t>(i) * p.row_bytes;
    for (uintptr_t q = begin / p.page; q <= (begin + p.row_bytes - 1) / p.page; ++q) {
      if (!touched[q - first]) {
        touched[q - first] = true;
        ++count;
      }
    }
  }
  return static_cast<double>(count) / static_cast<double>(pages);
}

}  // namespace loom::data
