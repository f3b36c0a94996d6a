#include "loom/data/idx_reader.h"

#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "loom/core/error.h"

namespace loom::data {
namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

// A fresh directory per test, removed afterwards.
class IdxReaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() / ("loom_idx_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_;
};

void append_u32(Bytes& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(v >> shift));
}

Bytes idx_bytes(uint32_t magic, const std::vector<uint32_t>& dims, const Bytes& payload) {
  Bytes out;
  append_u32(out, magic);
  for (uint32_t d : dims) append_u32(out, d);
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

void write_gz(const std::string& path, const Bytes& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr) << path;
  if (!bytes.empty()) {
    ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())), static_cast<int>(bytes.size()));
  }
  ASSERT_EQ(gzclose(f), Z_OK);
}

void write_raw(const std::string& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

Bytes read_raw(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

Bytes iota_bytes(size_t n) {
  Bytes b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(i * 7 + 3);
  return b;
}

// The DataError's message, or "" when `fn` does not throw one.
template <typename Fn>
std::string data_error(Fn fn) {
  try {
    fn();
  } catch (const DataError& e) {
    return e.what();
  }
  return "";
}

TEST_F(IdxReaderTest, ReadsImages) {
  const Bytes pixels = iota_bytes(5 * 4 * 3);
  write_gz(path("images.gz"), idx_bytes(0x00000803, {5, 4, 3}, pixels));
  const IdxArray a = read_idx(path("images.gz"));
  EXPECT_EQ(a.dims, (std::vector<int64_t>{5, 4, 3}));
  ASSERT_EQ(a.data.scalar_type(), at::kByte);
  EXPECT_EQ(a.data.sizes().vec(), (std::vector<int64_t>{5, 4, 3}));
  ASSERT_TRUE(a.data.is_contiguous());
  const uint8_t* p = a.data.data_ptr<uint8_t>();
  EXPECT_EQ(Bytes(p, p + pixels.size()), pixels);
  EXPECT_EQ(a.data[2][1][0].item<int64_t>(), pixels[2 * 12 + 1 * 3 + 0]);
}

TEST_F(IdxReaderTest, ReadsLabels) {
  const Bytes labels = {9, 0, 0, 3, 0, 2, 7};
  write_gz(path("labels.gz"), idx_bytes(0x00000801, {7}, labels));
  const IdxArray a = read_idx(path("labels.gz"));
  EXPECT_EQ(a.dims, (std::vector<int64_t>{7}));
  const uint8_t* p = a.data.data_ptr<uint8_t>();
  EXPECT_EQ(Bytes(p, p + 7), labels);
}

TEST_F(IdxReaderTest, ReadsUncompressedFiles) {
  write_raw(path("labels"), idx_bytes(0x00000801, {3}, {1, 2, 3}));
  EXPECT_EQ(read_idx(path("labels")).data.sum().item<int64_t>(), 6);
}

TEST_F(IdxReaderTest, ReadsAnEmptyPayload) {
  write_gz(path("empty.gz"), idx_bytes(0x00000803, {0, 28, 28}, {}));
  const IdxArray a = read_idx(path("empty.gz"));
  EXPECT_EQ(a.data.sizes().vec(), (std::vector<int64_t>{0, 28, 28}));
}

TEST_F(IdxReaderTest, TruncatedPayloadIsAnError) {
  write_gz(path("images.gz"), idx_bytes(0x00000803, {60000, 28, 28}, iota_bytes(1000)));
  const std::string message = data_error([&] { read_idx(path("images.gz")); });
  EXPECT_EQ(message, path("images.gz") + ": truncated: expected 47040000 bytes of pixels, got 1000");
}

TEST_F(IdxReaderTest, TruncatedLabelsAreAnError) {
  write_gz(path("labels.gz"), idx_bytes(0x00000801, {10}, iota_bytes(9)));
  EXPECT_EQ(data_error([&] { read_idx(path("labels.gz")); }),
            path("labels.gz") + ": truncated: expected 10 bytes of labels, got 9");
}

TEST_F(IdxReaderTest, TruncatedHeaderIsAnError) {
  write_gz(path("short.gz"), {0, 0, 8});
  EXPECT_NE(
      data_error([&] { read_idx(path("short.gz")); }).find("truncated: expected a 4-byte IDX header, got 3 bytes"),
      std::string::npos);

  Bytes dims_cut = idx_bytes(0x00000803, {5, 4, 3}, {});
  dims_cut.resize(4 + 6);
  write_gz(path("dims.gz"), dims_cut);
  EXPECT_NE(data_error([&] {
              read_idx(path("dims.gz"));
            }).find("truncated: expected 3 dimension sizes (12 bytes) after the magic, got 6"),
            std::string::npos);
}

TEST_F(IdxReaderTest, EmptyFileIsAnError) {
  write_raw(path("empty"), {});
  EXPECT_NE(data_error([&] { read_idx(path("empty")); }).find("got 0 bytes"), std::string::npos);
}

TEST_F(IdxReaderTest, CutGzipStreamIsAnError) {
  const Bytes pixels = iota_bytes(100 * 28 * 28);
  write_gz(path("images.gz"), idx_bytes(0x00000803, {100, 28, 28}, pixels));
  Bytes file = read_raw(path("images.gz"));
  file.resize(file.size() / 2);
  write_raw(path("images.gz"), file);
  const std::string message = data_error([&] { read_idx(path("images.gz")); });
  EXPECT_EQ(message.rfind(path("images.gz") + ": truncated: expected 78400 bytes of pixels", 0), 0u) << message;
  EXPECT_NE(message.find("the gzip stream ends early"), std::string::npos) << message;
}

TEST_F(IdxReaderTest, MissingGzipTrailerIsAnError) {
  write_gz(path("labels.gz"), idx_bytes(0x00000801, {4}, {1, 2, 3, 4}));
  Bytes file = read_raw(path("labels.gz"));
  file.resize(file.size() - 8);  // the CRC32 and ISIZE trailer
  write_raw(path("labels.gz"), file);
  EXPECT_NE(data_error([&] { read_idx(path("labels.gz")); }).find("truncated"), std::string::npos);
}

TEST_F(IdxReaderTest, CorruptGzipIsAnError) {
  write_gz(path("labels.gz"), idx_bytes(0x00000801, {4}, {1, 2, 3, 4}));
  Bytes file = read_raw(path("labels.gz"));
  file[file.size() - 6] ^= 0xff;  // inside the CRC32
  write_raw(path("labels.gz"), file);
  const std::string message = data_error([&] { read_idx(path("labels.gz")); });
  EXPECT_NE(message.find("corrupt gzip stream"), std::string::npos) << message;
}

TEST_F(IdxReaderTest, BadMagicIsAnError) {
  write_gz(path("bad.gz"), idx_bytes(0x12345678, {1}, {0}));
  EXPECT_EQ(data_error([&] { read_idx(path("bad.gz")); }), path("bad.gz") + ": bad magic 0x12345678 (not an IDX file)");
}

TEST_F(IdxReaderTest, UnsupportedElementTypeIsAnError) {
  write_gz(path("floats.gz"), idx_bytes(0x00000d01, {1}, {0, 0, 0, 0}));
  const std::string message = data_error([&] { read_idx(path("floats.gz")); });
  EXPECT_NE(message.find("unsupported IDX element type 0x0d"), std::string::npos) << message;
}

TEST_F(IdxReaderTest, ZeroDimensionsIsAnError) {
  write_gz(path("zero.gz"), idx_bytes(0x00000800, {}, {}));
  EXPECT_NE(data_error([&] { read_idx(path("zero.gz")); }).find("at least 1 dimension"), std::string::npos);
}

TEST_F(IdxReaderTest, TrailingBytesAreAnError) {
  Bytes bytes = idx_bytes(0x00000801, {4}, {1, 2, 3, 4});
  bytes.insert(bytes.end(), {5, 6, 7});
  write_gz(path("labels.gz"), bytes);
  EXPECT_EQ(data_error([&] { read_idx(path("labels.gz")); }),
            path("labels.gz") + ": 3 unexpected bytes after the 4 bytes of labels");
}

TEST_F(IdxReaderTest, ImplausibleDimensionsAreAnErrorNotAnAllocation) {
  write_gz(path("huge.gz"), idx_bytes(0x00000803, {0xffffffff, 0xffffffff, 2}, {1, 2}));
  EXPECT_NE(data_error([&] { read_idx(path("huge.gz")); }).find("implausible IDX dimensions"), std::string::npos);
  // Large but plausible: fails as truncated without allocating 4 GB first.
  write_gz(path("big.gz"), idx_bytes(0x00000801, {0xffffffff}, {1, 2}));
  EXPECT_NE(data_error([&] { read_idx(path("big.gz")); }).find("got 2"), std::string::npos);
}

TEST_F(IdxReaderTest, MissingFileNamesTheFileAndTheHint) {
  const std::string missing = path("nope/train-images-idx3-ubyte.gz");
  EXPECT_EQ(data_error([&] { read_idx(missing, "install the thing"); }),
            "cannot open " + missing + ": No such file or directory (install the thing)");
  EXPECT_EQ(data_error([&] { read_idx(missing); }), "cannot open " + missing + ": No such file or directory");
}

TEST_F(IdxReaderTest, DirectoryIsAnError) {
  EXPECT_NE(data_error([&] { read_idx(dir_.string()); }).find("Is a directory"), std::string::npos);
}

}  // namespace
}  // namespace loom::data
