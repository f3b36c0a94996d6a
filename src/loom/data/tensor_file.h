// Reads a file written by Python's torch.save({"inputs": X, "targets": Y}, FILE) (the
// zip format of PyTorch >= 1.6, which torch::pickle_load reads).
//
// The whole file is read into memory (torch's format is not memory-mapped here): use
// npy: for inputs larger than memory.
// Errors: loom::DataError starting with the file's path: missing or unreadable file, a
// file torch cannot read (e.g. the legacy format of _use_new_zipfile_serialization=False),
// an object that is not a dict, a missing "inputs" or "targets" key (listing the keys),
// a value that is not a tensor. The rows and dtypes are checked by make_file_dataset.
// Thread-safety: reentrant.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

namespace loom::data {

struct TensorPair {
  at::Tensor inputs;
  at::Tensor targets;
};

TensorPair read_tensor_file(const std::string& path);

}  // namespace loom::data
