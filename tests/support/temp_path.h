// Paths for test files. ctest runs every test case in its own process and several at
// once, so two cases (or two suites) must never write to the same fixed name: every
// path here carries the test process's pid.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <string>

namespace loom::test {

// "<gtest temp dir>/loom-<pid>-<name>": a file or directory name no other running test
// process uses.
inline std::string temp_path(const std::string& name) {
  std::string dir = ::testing::TempDir();
  if (!dir.empty() && dir.back() != '/') dir += '/';
  return dir + "loom-" + std::to_string(::getpid()) + "-" + name;
}

}  // namespace loom::test
