// Files that are either complete or absent: write to "<path>.tmp.<pid>", fsync, rename
// over <path>, fsync the directory. A crash or error midway never leaves a half-written
// <path>, and an existing <path> stays until the new one is complete.
#pragma once

#include <string>
#include <string_view>

namespace loom {

// Throws loom::Error naming the path and the OS error.
void write_file_atomic(const std::string& path, std::string_view bytes);

// Reads a whole file; throws DataError naming the path when it cannot.
std::string read_file(const std::string& path);

}  // namespace loom
