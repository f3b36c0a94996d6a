#include "loom/data/idx_reader.h"

#include <ATen/ATen.h>
#include <fcntl.h>
#include <fmt/ranges.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <memory>

#include "loom/core/error.h"

namespace loom::data {

namespace {

constexpr uint32_t kUnsignedByte = 0x08;
// Refuse headers that promise more than this many elements: a corrupt header must fail
// as a DataError, not as an allocation of terabytes.
constexpr uint64_t kMaxElements = uint64_t{1} << 40;

struct GzCloser {
  void operator()(gzFile_s* f) const { gzclose(f); }
};
using GzFile = std::unique_ptr<gzFile_s, GzCloser>;

// A word for what the payload of an IDX file of `ndims` dimensions usually holds.
const char* payload_noun(size_t ndims) {
  if (ndims == 1) return "labels";
  if (ndims == 3) return "pixels";
  return "data";
}

GzFile open_gz(const std::string& path, const std::string& open_hint) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    const bool missing = err == ENOENT || err == ENOTDIR;
    if (missing && !open_hint.empty()) {
      LOOM_THROW(DataError, "cannot open {}: {} ({})", path, std::strerror(err), open_hint);
    }
    LOOM_THROW(DataError, "cannot open {}: {}", path, std::strerror(err));
  }
  struct stat st {};
  if (::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
    ::close(fd);
    LOOM_THROW(DataError, "cannot open {}: {}", path, std::strerror(EISDIR));
  }
  gzFile f = gzdopen(fd, "rb");  // owns fd from here on
  if (f == nullptr) {
    ::close(fd);
    LOOM_THROW(DataError, "cannot open {}: out of memory for the gzip reader", path);
  }
  gzbuffer(f, 1 << 17);
  return GzFile(f);
}

// Throws when the stream reports a hard error (I/O error, corrupt deflate data, failed
// CRC). An early end of a gzip stream (Z_BUF_ERROR) is left to the caller, which knows
// how many bytes it expected.
void check_stream(gzFile f, const std::string& path) {
  int errnum = Z_OK;
  const char* message = gzerror(f, &errnum);
  if (errnum == Z_OK || errnum == Z_BUF_ERROR) return;
  if (errnum == Z_ERRNO) LOOM_THROW(DataError, "{}: read error: {}", path, std::strerror(errno));
  LOOM_THROW(DataError, "{}: corrupt gzip stream: {}", path, message ? message : "unknown error");
}

bool stream_cut_short(gzFile f) {
  int errnum = Z_OK;
  gzerror(f, &errnum);
  return errnum == Z_BUF_ERROR;
}

// Reads up to n bytes; returns how many it got (fewer only at the end of the data).
size_t read_up_to(gzFile f, uint8_t* dst, size_t n, const std::string& path) {
  size_t got = 0;
  while (got < n) {
    const auto chunk = static_cast<unsigned>(std::min<size_t>(n - got, size_t{1} << 30));
    const int r = gzread(f, dst + got, chunk);
    if (r < 0) check_stream(f, path);
    if (r <= 0) break;
    got += static_cast<size_t>(r);
  }
  check_stream(f, path);
  return got;
}

std::string truncation_note(gzFile f) { return stream_cut_short(f) ? " (the gzip stream ends early)" : ""; }

uint32_t big_endian_u32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

}  // namespace

IdxArray read_idx(const std::string& path, const std::string& open_hint) {
  GzFile file = open_gz(path, open_hint);
  gzFile f = file.get();

  uint8_t word[4];
  size_t got = read_up_to(f, word, 4, path);
  LOOM_CHECK(got == 4, DataError, "{}: truncated: expected a 4-byte IDX header, got {} bytes{}", path, got,
             truncation_note(f));
  const uint32_t magic = big_endian_u32(word);
  LOOM_CHECK((magic >> 16) == 0, DataError, "{}: bad magic 0x{:08x} (not an IDX file)", path, magic);
  const uint32_t type = (magic >> 8) & 0xff;
  LOOM_CHECK(type == kUnsignedByte, DataError,
             "{}: unsupported IDX element type 0x{:02x} in magic 0x{:08x} (only unsigned bytes, "
             "0x08, are supported)",
             path, type, magic);
  const size_t ndims = magic & 0xff;
  LOOM_CHECK(ndims > 0, DataError, "{}: bad magic 0x{:08x}: an IDX file needs at least 1 dimension", path, magic);

  std::vector<uint8_t> header(4 * ndims);
  got = read_up_to(f, header.data(), header.size(), path);
  LOOM_CHECK(got == header.size(), DataError,
             "{}: truncated: expected {} dimension sizes ({} bytes) after the magic, "
             "got {} bytes{}",
             path, ndims, header.size(), got, truncation_note(f));
  IdxArray result;
  result.dims.reserve(ndims);
  uint64_t count = 1;
  for (size_t d = 0; d < ndims; ++d) {
    const uint32_t size = big_endian_u32(&header[4 * d]);
    result.dims.push_back(size);
    count = size == 0 || count <= kMaxElements / size ? count * size : kMaxElements + 1;
  }
  LOOM_CHECK(count <= kMaxElements, DataError,
             "{}: implausible IDX dimensions {} (more than 2^40 elements; corrupt header?)", path,
             fmt::join(result.dims, "x"));

  // Grow the buffer as data arrives, so that a header promising far more than the file
  // holds fails as "truncated" without allocating the promised amount first.
  const char* noun = payload_noun(ndims);
  std::vector<uint8_t> payload;
  size_t have = 0;
  constexpr size_t kStep = size_t{64} << 20;
  while (have < count) {
    const size_t want = std::min<size_t>(count - have, kStep);
    payload.resize(have + want);
    const size_t r = read_up_to(f, payload.data() + have, want, path);
    have += r;
    if (r < want) break;
  }
  LOOM_CHECK(have == count, DataError, "{}: truncated: expected {} bytes of {}, got {}{}", path, count, noun, have,
             truncation_note(f));

  // Reading on to the end also makes zlib verify the gzip trailer (CRC and length).
  size_t extra = 0;
  uint8_t scratch[4096];
  while (const size_t r = read_up_to(f, scratch, sizeof scratch, path)) extra += r;
  LOOM_CHECK(extra == 0, DataError, "{}: {} unexpected bytes after the {} bytes of {}", path, extra, count, noun);
  LOOM_CHECK(!stream_cut_short(f), DataError, "{}: truncated: the gzip stream ends before its trailer", path);

  result.data = at::empty(result.dims, at::TensorOptions().dtype(at::kByte));
  if (count > 0) std::memcpy(result.data.data_ptr<uint8_t>(), payload.data(), count);
  return result;
}

void check_idx_labels(const IdxArray& labels, const std::string& labels_path, int64_t num_images,
                      const std::string& images_path) {
  LOOM_CHECK(labels.dims.size() == 1, DataError, "{}: expected a 1-D IDX file of labels, got {} dimensions",
             labels_path, labels.dims.size());
  LOOM_CHECK(labels.dims[0] == num_images, DataError, "{} holds {} images but {} holds {} labels", images_path,
             num_images, labels_path, labels.dims[0]);
}

}  // namespace loom::data
