#include "loom/data/mapped_file.h"

#include <ATen/ATen.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "loom/core/error.h"

namespace loom::data {

namespace {

// Closes a file descriptor on every path out of open().
struct FdCloser {
  int fd;
  ~FdCloser() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

MappedFile::MappedFile(std::string path, const uint8_t* data, size_t size)
    : path_(std::move(path)), data_(data), size_(size) {}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
}

std::shared_ptr<const MappedFile> MappedFile::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) LOOM_THROW(DataError, "cannot open {}: {}", path, std::strerror(errno));
  const FdCloser closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) LOOM_THROW(DataError, "cannot stat {}: {}", path, std::strerror(errno));
  LOOM_CHECK(!S_ISDIR(st.st_mode), DataError, "cannot open {}: {}", path, std::strerror(EISDIR));
  LOOM_CHECK(S_ISREG(st.st_mode), DataError, "cannot map {}: not a regular file", path);
  const auto size = static_cast<size_t>(st.st_size);
  if (size == 0) return std::shared_ptr<const MappedFile>(new MappedFile(path, nullptr, 0));
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  if (p == MAP_FAILED) LOOM_THROW(DataError, "cannot map {} ({} bytes): {}", path, size, std::strerror(errno));
  // Advice only: a failure changes speed, never results.
  (void)::madvise(p, size, MADV_RANDOM);
  return std::shared_ptr<const MappedFile>(new MappedFile(path, static_cast<const uint8_t*>(p), size));
}

at::Tensor mapped_tensor(const std::shared_ptr<const MappedFile>& file, size_t offset,
                         const std::vector<int64_t>& shape, at::ScalarType dtype) {
  const auto options = at::TensorOptions().dtype(dtype).device(at::kCPU);
  const size_t itemsize = c10::elementSize(dtype);
  int64_t numel = 1;
  for (const int64_t d : shape) numel *= d;
  const size_t bytes = static_cast<size_t>(numel) * itemsize;
  LOOM_CHECK(offset <= file->size() && bytes <= file->size() - offset, DataError,
             "{}: {} bytes at offset {} lie outside the file of {} bytes", file->path(), bytes, offset, file->size());
  // from_blob needs a non-null pointer even for an empty tensor.
  if (numel == 0) return at::empty(shape, options);
  if (offset % itemsize != 0) {
    at::Tensor owned = at::empty(shape, options);
    std::memcpy(owned.data_ptr(), file->data() + offset, bytes);
    return owned;
  }
  void* start = const_cast<uint8_t*>(file->data() + offset);
  // The deleter owns a reference to the mapping: the map outlives every tensor over it.
  return at::from_blob(
      start, shape, [keep = file](void*) mutable { keep.reset(); }, options);
}

}  // namespace loom::data
