// A parameter server's checkpoint: one file per server holding every key's values,
// version and optimizer state. The file is a checked frame (core/checked_file.h, magic
// "LOOMPSV1": format version 1, length, CRC-32) around a torch::serialize archive with
// "keys" (int64, sorted), "slice_bytes" (int64: the job's largest slice, 0 = not known;
// absent in files written before it was recorded), and per key K "value.K",
// "version.K" and "optimizer.K" (the optimizer's own archive). Written atomically. A file from before the frame (a bare
// archive, as loom wrote until the checked format) is still read, without a checksum.
//
// The server chooses the path (server.h: a message never does).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>

#include "loom/ps/slot.h"

namespace loom::ps {

// Writes every slot and `slice_bytes` (0 = not known) to `path`. Returns the number of
// keys; loom::Error naming the path when it cannot be written.
size_t write_server_checkpoint(const std::string& path, const std::unordered_map<uint64_t, Slot>& slots,
                               int64_t slice_bytes);

// Makes the slot of `key` from its saved values and version; the reader then loads the
// saved optimizer state into the slot's optimizer.
using RestoreSlot = std::function<Slot&(uint64_t key, const at::Tensor& values, int64_t version)>;

// Reads `path`, calling `restore` for each key. Returns the number of keys. Throws
// CheckpointError, one line naming the path and the cause: missing or unreadable,
// not a server checkpoint, truncated, corrupt (checksum), unreadable contents, or
// written with another slice size than `slice_bytes` (both known, i.e. not 0: the keys
// would be other slices), naming both sizes.
size_t read_server_checkpoint(const std::string& path, int64_t slice_bytes, const RestoreSlot& restore);

}  // namespace loom::ps
