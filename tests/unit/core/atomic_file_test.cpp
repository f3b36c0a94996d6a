#include "loom/core/atomic_file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>

#include "loom/core/error.h"
#include "support/temp_path.h"

namespace {

TEST(AtomicFile, WritesAndReplaces) {
  const std::string path = loom::test::temp_path("atomic_file_test.bin");
  loom::write_file_atomic(path, "first");
  EXPECT_EQ(loom::read_file(path), "first");
  loom::write_file_atomic(path, std::string("sec\0ond", 7));
  EXPECT_EQ(loom::read_file(path), std::string("sec\0ond", 7));
  // No temporary files are left behind.
  for (const auto& entry : std::filesystem::directory_iterator(::testing::TempDir())) {
    EXPECT_EQ(entry.path().string().find(path + ".tmp"), std::string::npos);
  }
}

TEST(AtomicFile, UnwritableDirectoryFailsAndLeavesNothing) {
  EXPECT_THROW(loom::write_file_atomic("/nonexistent-dir/x.bin", "data"), loom::Error);
  EXPECT_FALSE(std::filesystem::exists("/nonexistent-dir/x.bin"));
}

TEST(AtomicFile, MissingFileIsADataError) { EXPECT_THROW(loom::read_file("/nonexistent-dir/x.bin"), loom::DataError); }

}  // namespace
