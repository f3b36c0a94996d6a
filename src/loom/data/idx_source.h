// The idx: file source: MNIST-family IDX files of any image size and any number of
// classes (the Fashion-MNIST loader is the special case with its own normalisation).
//
//   idx:DIR             DIR/train-images-idx3-ubyte[.gz] + DIR/train-labels-idx1-ubyte[.gz]
//                       for Split::train, DIR/t10k-* for Split::test (the .gz file when
//                       both exist)
//   idx:IMAGES,LABELS   those two files, whatever the split
//
// Result: inputs float32, pixel / 255 (so [0, 1]; no mean/std normalisation), shaped
// [N, 1, H, W] for 3-D image files (one channel), [N, rest...] otherwise ([N, 1] for
// 1-D); targets int64 [N], the labels; num_classes = 1 + the largest label; name: the
// source string. Read into memory (gzip cannot be mapped).
// Errors: loom::DataError naming the file (read_idx's, and no images, label count).
// Thread-safety: reentrant.
#pragma once

#include <string>

#include "loom/data/dataset.h"

namespace loom::data {

// `spec` is the source without its "idx:" prefix; `name` is the whole source string.
Dataset load_idx_source(const std::string& name, const std::string& spec, Split split);

}  // namespace loom::data
