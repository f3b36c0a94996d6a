#include "loom/data/fashion_mnist.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <filesystem>
#include <string>
#include <vector>

#include "loom/core/error.h"

namespace loom::data {
namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

// The real files, from the Debian package dataset-fashion-mnist (a build dependency:
// a missing package must fail these tests, not skip them).

TEST(FashionMnist, TrainSplitLoads) {
  const Dataset d = load_fashion_mnist("", Split::train);
  EXPECT_EQ(d.name, "fashion-mnist");
  EXPECT_EQ(d.size(), 60000);
  EXPECT_EQ(d.num_classes, 10);
  EXPECT_EQ(d.sample_shape, (std::vector<int64_t>{1, 28, 28}));
  ASSERT_EQ(d.inputs.scalar_type(), at::kFloat);
  ASSERT_EQ(d.targets.scalar_type(), at::kLong);
  EXPECT_EQ(d.inputs.sizes().vec(), (std::vector<int64_t>{60000, 1, 28, 28}));
  EXPECT_EQ(d.targets.sizes().vec(), (std::vector<int64_t>{60000}));
  EXPECT_TRUE(d.inputs.is_contiguous());
  EXPECT_TRUE(d.targets.is_contiguous());
  EXPECT_GE(d.targets.min().item<int64_t>(), 0);
  EXPECT_LT(d.targets.max().item<int64_t>(), 10);
  // The official training set has 6000 images of each class.
  EXPECT_TRUE(at::equal(at::bincount(d.targets), at::full({10}, 6000, at::kLong)));
  // The normalization constants are this split's statistics.
  EXPECT_NEAR(d.inputs.mean().item<double>(), 0.0, 0.005);
  EXPECT_NEAR(d.inputs.std().item<double>(), 1.0, 0.005);
  // Pixels span [0, 255] before normalization.
  EXPECT_NEAR(d.inputs.min().item<double>(), -kFashionMnistMean / kFashionMnistStd, 1e-5);
  EXPECT_NEAR(d.inputs.max().item<double>(), (1 - kFashionMnistMean) / kFashionMnistStd, 1e-5);
  // The first labels of the official file: ankle boot, T-shirt, T-shirt, dress, ...
  EXPECT_TRUE(at::equal(d.targets.slice(0, 0, 6), at::tensor({9, 0, 0, 3, 0, 2}, at::kLong)));
}

TEST(FashionMnist, TestSplitLoads) {
  const Dataset d = load_fashion_mnist(default_fashion_mnist_dir(), Split::test);
  EXPECT_EQ(d.size(), 10000);
  EXPECT_EQ(d.inputs.sizes().vec(), (std::vector<int64_t>{10000, 1, 28, 28}));
  EXPECT_TRUE(at::equal(at::bincount(d.targets), at::full({10}, 1000, at::kLong)));
  EXPECT_NEAR(d.inputs.mean().item<double>(), 0.0, 0.02);
  EXPECT_NEAR(d.inputs.std().item<double>(), 1.0, 0.02);
  EXPECT_TRUE(at::equal(d.targets.slice(0, 0, 6), at::tensor({9, 2, 1, 1, 6, 1}, at::kLong)));
}

TEST(FashionMnist, FileNames) {
  EXPECT_EQ(default_fashion_mnist_dir(), "/usr/share/datasets/fashion-mnist");
  EXPECT_EQ(fashion_mnist_images_file(Split::train), "train-images-idx3-ubyte.gz");
  EXPECT_EQ(fashion_mnist_labels_file(Split::train), "train-labels-idx1-ubyte.gz");
  EXPECT_EQ(fashion_mnist_images_file(Split::test), "t10k-images-idx3-ubyte.gz");
  EXPECT_EQ(fashion_mnist_labels_file(Split::test), "t10k-labels-idx1-ubyte.gz");
}

// Small hand-made files in a temporary directory.

class FakeFashionMnist : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() / ("loom_fmnist_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  static void append_u32(Bytes& out, uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(v >> shift));
  }
  void write_idx(const std::string& name, uint32_t magic, const std::vector<uint32_t>& dims, const Bytes& payload) {
    Bytes out;
    append_u32(out, magic);
    for (uint32_t d : dims) append_u32(out, d);
    out.insert(out.end(), payload.begin(), payload.end());
    gzFile f = gzopen((dir_ / name).c_str(), "wb");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(gzwrite(f, out.data(), static_cast<unsigned>(out.size())), static_cast<int>(out.size()));
    ASSERT_EQ(gzclose(f), Z_OK);
  }
  // n images whose pixels all equal their index, labels as given.
  void write_split(Split split, uint32_t n, const Bytes& labels, uint32_t side = 28) {
    Bytes pixels;
    for (uint32_t i = 0; i < n; ++i) pixels.insert(pixels.end(), side * side, uint8_t(i));
    write_idx(fashion_mnist_images_file(split), 0x803, {n, side, side}, pixels);
    write_idx(fashion_mnist_labels_file(split), 0x801, {uint32_t(labels.size())}, labels);
  }
  std::string message(Split split) {
    try {
      load_fashion_mnist(dir_.string(), split);
    } catch (const DataError& e) {
      return e.what();
    }
    return "";
  }
  std::string file(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_;
};

TEST_F(FakeFashionMnist, ScalesAndNormalizes) {
  write_split(Split::test, 3, {4, 0, 9});
  const Dataset d = load_fashion_mnist(dir_.string(), Split::test);
  EXPECT_EQ(d.inputs.sizes().vec(), (std::vector<int64_t>{3, 1, 28, 28}));
  EXPECT_TRUE(at::equal(d.targets, at::tensor({4, 0, 9}, at::kLong)));
  for (int i = 0; i < 3; ++i) {
    const float expected = (i / 255.0f - kFashionMnistMean) / kFashionMnistStd;
    EXPECT_NEAR(d.inputs[i].min().item<float>(), expected, 1e-6);
    EXPECT_NEAR(d.inputs[i].max().item<float>(), expected, 1e-6);
  }
}

TEST_F(FakeFashionMnist, MissingFilesNameTheFileAndThePackage) {
  const std::string m = message(Split::train);
  EXPECT_EQ(m, "cannot open " + file("train-images-idx3-ubyte.gz") +
                   ": No such file or directory (the Fashion-MNIST files come with the Debian "
                   "package dataset-fashion-mnist: apt-get install dataset-fashion-mnist, or "
                   "pass --data-dir)");
  write_idx(fashion_mnist_images_file(Split::test), 0x803, {0, 28, 28}, {});
  EXPECT_NE(message(Split::test).find(file("t10k-labels-idx1-ubyte.gz")), std::string::npos);
  EXPECT_NE(message(Split::test).find("dataset-fashion-mnist"), std::string::npos);
}

TEST_F(FakeFashionMnist, CountMismatchIsAnError) {
  write_split(Split::train, 3, {1, 2});
  EXPECT_EQ(message(Split::train), file("train-images-idx3-ubyte.gz") + " holds 3 images but " +
                                       file("train-labels-idx1-ubyte.gz") + " holds 2 labels");
}

TEST_F(FakeFashionMnist, LabelOutOfRangeIsAnError) {
  write_split(Split::train, 3, {1, 10, 2});
  EXPECT_EQ(message(Split::train), file("train-labels-idx1-ubyte.gz") + ": label 10 at index 1 is outside [0, 10)");
}

TEST_F(FakeFashionMnist, WrongImageSizeIsAnError) {
  write_split(Split::train, 2, {1, 2}, 32);
  EXPECT_EQ(message(Split::train), file("train-images-idx3-ubyte.gz") + ": expected images of 28x28 pixels, got 32x32");
}

TEST_F(FakeFashionMnist, SwappedFilesAreAnError) {
  write_idx(fashion_mnist_images_file(Split::train), 0x801, {2}, {1, 2});
  EXPECT_NE(message(Split::train).find("expected a 3-D IDX file of images, got 1 dimensions"), std::string::npos);
}

}  // namespace
}  // namespace loom::data
