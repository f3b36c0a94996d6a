#include "loom/data/idx_source.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <zlib.h>

#include <string>
#include <vector>

#include "data_files.h"
#include "loom/core/error.h"
#include "loom/data/dataset.h"

namespace loom::data {
namespace {

using testing::contains;
using testing::DataFileTest;
using testing::error_of;
using testing::write_file;

std::string idx(uint32_t magic, const std::vector<uint32_t>& dims, const std::vector<uint8_t>& payload) {
  std::string out;
  const auto u32 = [&](uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) out += static_cast<char>(v >> shift);
  };
  u32(magic);
  for (const uint32_t d : dims) u32(d);
  return out + std::string(payload.begin(), payload.end());
}

void write_gz(const std::string& path, const std::string& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())), static_cast<int>(bytes.size()));
  ASSERT_EQ(gzclose(f), Z_OK);
}

class IdxSource : public DataFileTest {
 protected:
  Dataset load(const std::string& name, Split split = Split::train) {
    DataOptions o;
    o.name = name;
    return load_dataset(o, split);
  }
};

TEST_F(IdxSource, DirectoryOfAnyImageSizeAndClassCount) {
  // 3 train images of 2x5 pixels with 12 classes (gzipped); 2 test images (plain files).
  std::vector<uint8_t> pixels(30);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>(i * 8);
  write_gz(path("train-images-idx3-ubyte.gz"), idx(0x803, {3, 2, 5}, pixels));
  write_gz(path("train-labels-idx1-ubyte.gz"), idx(0x801, {3}, {11, 0, 4}));
  write_file(path("t10k-images-idx3-ubyte"), idx(0x803, {2, 2, 5}, std::vector<uint8_t>(20, 255)));
  write_file(path("t10k-labels-idx1-ubyte"), idx(0x801, {2}, {1, 1}));

  const Dataset train = load("idx:" + dir_);
  EXPECT_EQ(train.name, "idx:" + dir_);
  EXPECT_EQ(train.sample_shape, (std::vector<int64_t>{1, 2, 5}));
  EXPECT_EQ(train.inputs.sizes().vec(), (std::vector<int64_t>{3, 1, 2, 5}));
  // pixel / 255, nothing else.
  EXPECT_TRUE(
      at::equal(train.inputs.flatten(), at::tensor(std::vector<float>(pixels.begin(), pixels.end())).div_(255.0)));
  EXPECT_EQ(train.targets.scalar_type(), at::kLong);
  EXPECT_TRUE(at::equal(train.targets, at::tensor({11, 0, 4}, at::kLong)));
  EXPECT_EQ(train.num_classes, 12);
  EXPECT_TRUE(train.reject_nan);

  const Dataset test = load("idx:" + dir_, Split::test);
  EXPECT_EQ(test.size(), 2);
  EXPECT_EQ(test.inputs.max().item<float>(), 1.0f);
  EXPECT_EQ(test.num_classes, 2);
}

TEST_F(IdxSource, TwoFilesWhateverTheSplit) {
  write_file(path("im"), idx(0x802, {2, 3}, {0, 51, 255, 0, 0, 0}));  // 2-D: [N, features]
  write_file(path("lb"), idx(0x801, {2}, {0, 1}));
  const Dataset d = load("idx:" + path("im") + "," + path("lb"), Split::test);
  EXPECT_EQ(d.sample_shape, (std::vector<int64_t>{3}));
  EXPECT_FLOAT_EQ(d.inputs[0][1].item<float>(), 0.2f);
}

TEST_F(IdxSource, Errors) {
  EXPECT_TRUE(contains(error_of([&] { load("idx:" + dir_); }),
                       "cannot open " + path("train-images-idx3-ubyte.gz") + ": No such file or directory"));
  write_file(path("im"), idx(0x803, {3, 2, 2}, std::vector<uint8_t>(12)));
  write_file(path("lb"), idx(0x801, {2}, {0, 1}));
  EXPECT_EQ(error_of([&] { load("idx:" + path("im") + "," + path("lb")); }),
            path("im") + " holds 3 images but " + path("lb") + " holds 2 labels");
  write_file(path("im"), idx(0x803, {0, 2, 2}, {}));
  EXPECT_EQ(error_of([&] { load("idx:" + path("im") + "," + path("lb")); }), path("im") + ": holds 0 images");
}

}  // namespace
}  // namespace loom::data
