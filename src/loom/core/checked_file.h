// Checked files: a payload framed so that a reader can tell a file of its own format, of
// the right version, complete and intact, from anything else. The frame:
//
//   [magic: 8 bytes][payload length: u64][payload][CRC-32 of the payload: u64]
//
// integers little-endian. The magic names the format and its version ("LOOMCKPT": a
// training checkpoint part; "LOOMPSV1": a parameter server's shard, version 1). Files
// are written atomically (atomic_file.h): complete or absent. The payload is opaque
// bytes; this layer knows nothing of tensors.
#pragma once

#include <string>
#include <string_view>

namespace loom {

struct CheckedFormat {
  std::string_view magic;  // exactly 8 bytes
  std::string_view what;   // for errors: "loom checkpoint", "parameter-server checkpoint"
  std::string_view noun;   // for errors: "checkpoint"
};

// The framed bytes of `payload`.
std::string frame_checked(const CheckedFormat& format, std::string_view payload);
// Writes the framed payload to `path` atomically; loom::Error naming the path otherwise.
void write_checked_file(const std::string& path, const CheckedFormat& format, std::string_view payload);

// The payload of `bytes`, read from `path` (named in errors). CheckpointError, one line
// naming the path and the cause, when the magic is not format.magic ("not a <what> (no
// <magic> header)"), when the length does not match ("truncated or padded <noun>"), or
// when the CRC does not ("checksum mismatch, the <noun> is corrupt").
std::string_view unframe_checked(const std::string& path, const CheckedFormat& format, std::string_view bytes);
// read_file(path) + unframe_checked; a missing or unreadable file is a CheckpointError too.
std::string read_checked_file(const std::string& path, const CheckedFormat& format);

// True when `bytes` begins with `magic`.
bool has_magic(std::string_view bytes, std::string_view magic);

}  // namespace loom
