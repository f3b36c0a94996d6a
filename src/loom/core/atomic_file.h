// Files that are either complete or absent: write to "<path>.tmp.<pid>", fsync, rename
// over <path>, fsync the directory. A crash or error midway never leaves a half-written
// <path>, and an existing <path> stays until the new one is complete.
#pragma once

#include <functional>
#include <string>
#include <string_view>

namespace loom {

// Throws loom::Error naming the path and the OS error.
void write_file_atomic(const std::string& path, std::string_view bytes);

// The same, streamed: `produce(write)` calls write(bytes) as often as it likes, so a large
// file is never held in memory whole. `write` never throws: the first error is kept,
// later writes are dropped, and it is thrown (naming the path and the OS error) once
// `produce` returns, so a producer that cannot survive an exception midway (libtorch's
// zip writer) is never interrupted. An exception from `produce` removes the temporary
// file and propagates.
using ByteSink = std::function<void(std::string_view bytes)>;
void write_file_atomic(const std::string& path, const std::function<void(const ByteSink& write)>& produce);

// Reads a whole file; throws DataError naming the path when it cannot.
std::string read_file(const std::string& path);

}  // namespace loom
