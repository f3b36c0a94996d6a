// Checked files (core/checked_file.h): the frame is byte-exact (so training checkpoints
// written before it was shared still read), and every kind of damage is refused with one
// line naming the file and the cause.
#include "loom/core/checked_file.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "loom/core/atomic_file.h"
#include "loom/core/error.h"

namespace loom {
namespace {

constexpr CheckedFormat kFormat{"LOOMTEST", "loom test file", "test file"};

// The CheckpointError message of unframing `bytes` as "f.bin" ("" when it passes).
std::string problem(std::string_view bytes) {
  try {
    unframe_checked("f.bin", kFormat, bytes);
    return "";
  } catch (const CheckpointError& e) {
    return e.what();
  }
}

TEST(CheckedFile, TheFrameIsMagicLengthPayloadAndCrc32LittleEndian) {
  // CRC-32 of "abc" is 0x352441c2 (zlib, as the training checkpoints always used).
  const std::string expected = std::string("LOOMCKPT") + std::string("\x03\0\0\0\0\0\0\0", 8) + "abc" +
                               std::string("\xc2\x41\x24\x35\0\0\0\0", 8);
  EXPECT_EQ(frame_checked({"LOOMCKPT", "loom checkpoint", "checkpoint"}, "abc"), expected);
  EXPECT_EQ(unframe_checked("f", {"LOOMCKPT", "loom checkpoint", "checkpoint"}, expected), "abc");
  EXPECT_EQ(unframe_checked("f", kFormat, frame_checked(kFormat, "")), "");
}

TEST(CheckedFile, DamageIsRefusedNamingTheFileAndTheCause) {
  const std::string good = frame_checked(kFormat, "the payload");
  EXPECT_EQ(problem(good), "");
  for (size_t i = 16; i < good.size() - 8; ++i) {
    std::string changed = good;
    changed[i] = static_cast<char>(changed[i] ^ 0x01);
    EXPECT_EQ(problem(changed), "f.bin: checksum mismatch, the test file is corrupt") << "byte " << i;
  }
  std::string changed_crc = good;
  changed_crc.back() = '\x01';
  EXPECT_EQ(problem(changed_crc), "f.bin: checksum mismatch, the test file is corrupt");
  EXPECT_EQ(problem(good.substr(0, good.size() - 1)),
            "f.bin: truncated or padded test file (34 bytes, the header promises 35)");
  EXPECT_EQ(problem(good + "x"), "f.bin: truncated or padded test file (36 bytes, the header promises 35)");
  std::string huge_length = good;
  huge_length[15] = '\x7f';  // a length near 2^63: no overflow, no read past the end
  EXPECT_NE(problem(huge_length).find("f.bin: truncated or padded test file (35 bytes"), std::string::npos)
      << problem(huge_length);
  EXPECT_EQ(problem(good.substr(0, 10)), "f.bin: not a loom test file (no LOOMTEST header)");
  EXPECT_EQ(problem(""), "f.bin: not a loom test file (no LOOMTEST header)");
  EXPECT_EQ(problem(frame_checked({"LOOMCKPT", "x", "y"}, "the payload")),
            "f.bin: not a loom test file (no LOOMTEST header)");
}

TEST(CheckedFile, WriteAndReadAFile) {
  const std::string path =
      (std::filesystem::path(::testing::TempDir()) / ("loom-checked-" + std::to_string(::getpid()))).string();
  write_checked_file(path, kFormat, std::string("bytes\0with a zero", 17));
  EXPECT_EQ(read_checked_file(path, kFormat), std::string("bytes\0with a zero", 17));
  write_file_atomic(path, "garbage");
  EXPECT_THROW(read_checked_file(path, kFormat), CheckpointError);
  std::remove(path.c_str());
  try {
    read_checked_file(path, kFormat);
    ADD_FAILURE() << "read a missing file";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace loom
