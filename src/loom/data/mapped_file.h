// A read-only memory map of a whole file, and tensors that view it without a copy.
//
// The map is MAP_PRIVATE and PROT_READ, advised MADV_RANDOM: a worker that reads its
// random rows of a large file faults in only the pages of those rows, without the
// kernel's read-ahead pulling in its neighbours' pages too.
//
// Ownership: MappedFile owns the mapping (munmap in the destructor; not copyable). A
// tensor from mapped_tensor() holds a shared_ptr to it in its deleter, so the mapping
// lives as long as the last tensor (or view of one) that reads it, whatever happens to
// the MappedFile handle the caller had.
// The tensors are read-only: writing into one is a segmentation fault.
// Thread-safety: immutable after open(); concurrent reads are safe.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace loom::data {

class MappedFile {
 public:
  // Maps the whole file; throws DataError naming the path and the cause (missing,
  // a directory, unreadable, mmap failed). An empty file maps to size() == 0.
  static std::shared_ptr<const MappedFile> open(const std::string& path);

  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile(std::string path, const uint8_t* data, size_t size);

  std::string path_;
  const uint8_t* data_;
  size_t size_;
};

// A contiguous CPU tensor of `shape` and `dtype` over the bytes [offset, offset +
// numel * itemsize) of `file`, sharing them (no copy). The caller has checked that the
// range lies inside the file. When `offset` is not a multiple of the element size, the
// bytes are copied into an owned tensor instead (rare: NumPy aligns its data).
at::Tensor mapped_tensor(const std::shared_ptr<const MappedFile>& file, size_t offset,
                         const std::vector<int64_t>& shape, at::ScalarType dtype);

}  // namespace loom::data
