#include "loom/data/fashion_mnist.h"

#include <ATen/ATen.h>

#include <filesystem>

#include "loom/core/error.h"
#include "loom/core/log.h"
#include "loom/data/idx_reader.h"

namespace loom::data {

namespace {

constexpr int64_t kSide = 28;
constexpr const char* kInstallHint =
    "the Fashion-MNIST files come with the Debian package dataset-fashion-mnist: "
    "apt-get install dataset-fashion-mnist, or pass --data-dir";

const char* file_prefix(Split split) { return split == Split::train ? "train" : "t10k"; }

}  // namespace

std::string default_fashion_mnist_dir() { return "/usr/share/datasets/fashion-mnist"; }

std::string fashion_mnist_images_file(Split split) { return std::string(file_prefix(split)) + "-images-idx3-ubyte.gz"; }

std::string fashion_mnist_labels_file(Split split) { return std::string(file_prefix(split)) + "-labels-idx1-ubyte.gz"; }

Dataset load_fashion_mnist(const std::string& dir, Split split) {
  const std::filesystem::path root = dir.empty() ? default_fashion_mnist_dir() : dir;
  const std::string images_path = (root / fashion_mnist_images_file(split)).string();
  const std::string labels_path = (root / fashion_mnist_labels_file(split)).string();

  IdxArray images = read_idx(images_path, kInstallHint);
  LOOM_CHECK(images.dims.size() == 3, DataError, "{}: expected a 3-D IDX file of images, got {} dimensions",
             images_path, images.dims.size());
  LOOM_CHECK(images.dims[1] == kSide && images.dims[2] == kSide, DataError,
             "{}: expected images of {}x{} pixels, got {}x{}", images_path, kSide, kSide, images.dims[1],
             images.dims[2]);
  IdxArray labels = read_idx(labels_path, kInstallHint);
  const int64_t n = images.dims[0];
  check_idx_labels(labels, labels_path, n, images_path);
  if (n > 0) {
    const at::Tensor bad = (labels.data >= kFashionMnistClasses).nonzero();
    if (bad.size(0) > 0) {
      const int64_t at_index = bad[0][0].item<int64_t>();
      LOOM_THROW(DataError, "{}: label {} at index {} is outside [0, {})", labels_path,
                 labels.data[at_index].item<int64_t>(), at_index, kFashionMnistClasses);
    }
  }

  Dataset dataset;
  dataset.inputs =
      images.data.to(at::kFloat).div_(255.0).sub_(kFashionMnistMean).div_(kFashionMnistStd).view({n, 1, kSide, kSide});
  dataset.targets = labels.data.to(at::kLong);
  dataset.name = "fashion-mnist";
  dataset.sample_shape = {1, kSide, kSide};
  dataset.num_classes = kFashionMnistClasses;
  log::debug("loaded fashion-mnist {}: {} samples from {}", to_string(split), n, root.string());
  return dataset;
}

}  // namespace loom::data
