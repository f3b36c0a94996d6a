// A data set (in memory, or memory-mapped from a file) and the batches drawn from it.
//
// Ownership: a Dataset owns its tensors (refcounted at::Tensor; copying a Dataset is
// cheap and shares the storage, including a file mapping). Batches are fresh tensors,
// never views into the set.
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
  // [N, sample_shape...], contiguous, on the CPU: float32 (every built-in set), or a
  // file's own dtype (float32, float64, int64, uint8), possibly a read-only memory map
  // of the file: never write into it.
  at::Tensor inputs;
  // int64 [N] class indices in [0, num_classes), or float32 [N] or [N, K] values
  // (regression, bce-with-logits); contiguous.
  at::Tensor targets;
  std::string name;                   // e.g. "fashion-mnist", "synthetic", "npy:x.npy,y.npy"
  std::vector<int64_t> sample_shape;  // one input's shape, e.g. {1, 28, 28}
  int64_t num_classes = 0;            // int64 targets: the number of classes; float targets: 0
  // gather()/slice() throw DataError naming the set and the row when a row they read
  // holds a NaN in its inputs (sets read lazily from files are checked as rows are read).
  bool reject_nan = false;
  // The inputs are a memory map of a file (npy:): rows are read from disk on first touch.
  bool memory_mapped = false;

  int64_t size() const;          // N; 0 for a default-constructed Dataset
  int64_t target_width() const;  // 1 for targets [N], K for [N, K]
};

struct Batch {
  at::Tensor inputs;   // float32 [B, sample_shape...], contiguous (converted from the set's dtype)
  at::Tensor targets;  // the set's targets' dtype: int64 [B], or float32 [B] / [B, K]

  int64_t size() const;  // B
};

// The rows `indices` of the data set, in that order (repeats allowed). An index outside
// [0, size()) throws loom::DataError naming it and the data set. Reads only those rows
// (a memory-mapped set touches only their pages).
Batch gather(const Dataset& dataset, const std::vector<int64_t>& indices);
// Same, with a 1-D integer tensor of indices (any integer dtype, CPU).
Batch gather(const Dataset& dataset, const at::Tensor& indices);
// Asks the kernel to start reading the rows `indices` of a memory-mapped set from disk
// in the background (madvise MADV_WILLNEED on their pages), so that a later gather()
// of them does not wait for the disk; it maps nothing into the process. Returns at
// once; does nothing for a set in memory. Indices out of range are ignored (gather()
// reports them).
void prefetch(const Dataset& dataset, const std::vector<int64_t>& indices);
// The same for every row: one sequential read-ahead of the whole inputs array, in large
// reads (a disk reads a file sequentially 10x faster than row by row at random here).
void prefetch_all(const Dataset& dataset);
// The fraction, in [0, 1], of the pages of a memory-mapped set's inputs that the rows
// `indices` lie on; 0 for a set in memory. The trainer reads the whole file ahead
// (prefetch_all) when one epoch of a worker's rows covers at least half of its pages,
// and only the next steps' rows (prefetch) otherwise: a worker whose shard is a small
// part of a large file still reads only its own rows from disk.
double page_coverage(const Dataset& dataset, const std::vector<int64_t>& indices);
// The rows [start, start + count), as gather() converts them.
Batch slice(const Dataset& dataset, int64_t start, int64_t count);

// What a loss needs of the targets. `classes`: int64 class indices (float targets that
// are all whole numbers >= 0 are converted; num_classes = 1 + the largest); `values`:
// float32 (integer targets are converted; num_classes = 0). Anything else throws
// DataError naming the set and the first offending row. Returns the converted set.
enum class TargetKind { classes, values };
Dataset with_targets(Dataset dataset, TargetKind kind);

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

// ---- Data sets by name or by file --------------------------------------------
// The one place that maps a data-set name (the CLI's --data and --eval-data) to its
// loader. A name is a built-in set or a source of the user's files (docs/data.md):
//
//   fashion-mnist | synthetic      built in; each has a train and a test split
//   npy:INPUTS.npy,TARGETS.npy     NumPy arrays, C order, memory-mapped
//   tensors:FILE.pt                torch.save({"inputs": X, "targets": Y}, FILE)
//   csv:FILE.csv                   a header line, numeric columns; the target column by
//                                  name (DataOptions::target_column; empty: the last)
//   idx:DIR | idx:IMAGES,LABELS    MNIST-family IDX files (gzipped or not); DIR holds
//                                  train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz]
//                                  (Split::train) and t10k-* (Split::test)
//
// A file source is one split: `split` matters only to the built-in sets and idx:DIR.
// Thread-safety: reentrant.
struct DataOptions {
  std::string name = "fashion-mnist";  // a built-in name or a file source, as above
  std::string dir;                     // fashion-mnist's files; empty: the default dir
  SyntheticOptions synthetic;          // used when name == "synthetic"; dir is ignored
  std::string target_column;           // csv: the target column's header name; empty: the last column
  bool allow_nan = false;              // false: the set rejects NaN inputs (Dataset::reject_nan)
};

// The built-in names, in a stable order: {"fashion-mnist", "synthetic"}.
std::vector<std::string> dataset_names();
// The file-source prefixes, in a stable order: {"npy", "tensors", "csv", "idx"}.
std::vector<std::string> source_kinds();
// True for the built-in names (they bring their own test split).
bool has_test_split(const std::string& name);

// An unknown name or source kind throws loom::ConfigError listing the known ones;
// loading errors are one line naming the file and the cause (loom::DataError).
Dataset load_dataset(const DataOptions& options, Split split);

}  // namespace loom::data
