// A Dataset from the two arrays a file source holds (npy:, tensors:): the checks and
// conversions every file source shares, so each reader only reads.
//
// Inputs: any real dtype (float32/64/16, bfloat16, int64/32/16/8, uint8, bool), kept as
// stored and not copied (a memory-mapped tensor stays mapped; non-contiguous ones are
// made contiguous); 1-D inputs [N] become [N, 1]. They are never scanned here.
// Targets (small, so copied and scanned): integer or bool [N] or [N, 1] -> int64 [N]
// with num_classes = 1 + the largest (0 when one is negative: with_targets(classes)
// then names the row); integer [N, K > 1] and floating [N] / [N, K] -> float32, with
// num_classes = 0. With `allow_nan` false a NaN target is an error.
// Errors: loom::DataError starting with `name` (the source string, which names the
// files): 0-d or empty (0 rows) arrays, unsupported dtypes, targets of more than 2
// dimensions, row counts that differ, NaN targets.
// Thread-safety: reentrant.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

#include "loom/data/dataset.h"

namespace loom::data {

Dataset make_file_dataset(const std::string& name, at::Tensor inputs, at::Tensor targets, bool allow_nan);

}  // namespace loom::data
