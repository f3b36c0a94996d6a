#include "loom/core/checked_file.h"

#include <zlib.h>

#include <algorithm>
#include <cstdint>

#include "loom/core/atomic_file.h"
#include "loom/core/error.h"

namespace loom {

namespace {

constexpr size_t kMagicBytes = 8;
constexpr size_t kHeader = kMagicBytes + sizeof(uint64_t);
constexpr size_t kTrailer = sizeof(uint64_t);

uint64_t crc32_of(std::string_view bytes) {
  uLong crc = crc32(0L, Z_NULL, 0);
  size_t done = 0;
  while (done < bytes.size()) {  // zlib takes uInt lengths
    const auto n = static_cast<uInt>(std::min<size_t>(bytes.size() - done, 1u << 30));
    crc = crc32(crc, reinterpret_cast<const Bytef*>(bytes.data() + done), n);
    done += n;
  }
  return crc;
}

void put_u64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint64_t get_u64(std::string_view in, size_t at) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(static_cast<unsigned char>(in[at + i])) << (8 * i);
  return v;
}

void check_format(const CheckedFormat& format) {
  LOOM_CHECK(format.magic.size() == kMagicBytes, Error, "checked file: the magic '{}' is not 8 bytes", format.magic);
}

}  // namespace

bool has_magic(std::string_view bytes, std::string_view magic) { return bytes.substr(0, magic.size()) == magic; }

std::string frame_checked(const CheckedFormat& format, std::string_view payload) {
  check_format(format);
  std::string bytes;
  bytes.reserve(kHeader + payload.size() + kTrailer);
  bytes.append(format.magic);
  put_u64(bytes, payload.size());
  bytes.append(payload);
  put_u64(bytes, crc32_of(payload));
  return bytes;
}

void write_checked_file(const std::string& path, const CheckedFormat& format, std::string_view payload) {
  write_file_atomic(path, frame_checked(format, payload));
}

std::string_view unframe_checked(const std::string& path, const CheckedFormat& format, std::string_view bytes) {
  check_format(format);
  LOOM_CHECK(bytes.size() >= kHeader && has_magic(bytes, format.magic), CheckpointError, "{}: not a {} (no {} header)",
             path, format.what, format.magic);
  const uint64_t length = get_u64(bytes, kMagicBytes);
  // Compared without overflow: a corrupt length may be anything.
  LOOM_CHECK(length <= bytes.size() && bytes.size() - length == kHeader + kTrailer, CheckpointError,
             "{}: truncated or padded {} ({} bytes, the header promises {})", path, format.noun, bytes.size(),
             length > bytes.size() ? fmt::format("{} + {}", kHeader + kTrailer, length)
                                   : std::to_string(kHeader + length + kTrailer));
  const std::string_view payload = bytes.substr(kHeader, length);
  LOOM_CHECK(crc32_of(payload) == get_u64(bytes, kHeader + length), CheckpointError,
             "{}: checksum mismatch, the {} is corrupt", path, format.noun);
  return payload;
}

std::string read_checked_file(const std::string& path, const CheckedFormat& format) {
  std::string bytes;
  try {
    bytes = read_file(path);
  } catch (const DataError& e) {
    LOOM_THROW(CheckpointError, "{}", e.what());
  }
  const size_t length = unframe_checked(path, format, bytes).size();
  bytes.resize(kHeader + length);  // the payload, in place
  bytes.erase(0, kHeader);
  return bytes;
}

}  // namespace loom
