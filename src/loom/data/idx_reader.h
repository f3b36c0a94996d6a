// Reads IDX files (the MNIST / Fashion-MNIST container format), gzipped or not.
//
// Format: a big-endian uint32 magic 0x0000TTNN (TT: element type, NN: number of
// dimensions), NN big-endian uint32 dimension sizes, then exactly prod(dims) elements.
// Only unsigned bytes (TT = 0x08) are supported: 0x00000801 is a 1-D label file,
// 0x00000803 a 3-D image file.
//
// Every defect is a loom::DataError whose one-line message starts with the file's path
// and names the cause: missing or unreadable file, bad magic, unsupported element type,
// truncated header or payload, bytes after the payload, corrupt gzip stream (including
// a failed CRC check). A file that is not gzip-compressed is read as it is.
//
// Thread-safety: read_idx is reentrant; concurrent calls on different files are fine.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace loom::data {

struct IdxArray {
  std::vector<int64_t> dims;  // as stored in the header, outermost first
  at::Tensor data;            // uint8, contiguous, shape `dims`; owns its memory
};

// `open_hint` is appended in parentheses to the error raised when the file does not
// exist, e.g. how to install the package that provides it.
IdxArray read_idx(const std::string& path, const std::string& open_hint = {});

// Checks that `labels` (read from labels_path) is a 1-D label file of one label per
// image of the `num_images` in images_path; throws DataError naming the files otherwise.
void check_idx_labels(const IdxArray& labels, const std::string& labels_path, int64_t num_images,
                      const std::string& images_path);

}  // namespace loom::data
