// Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017) from its four gzipped IDX files, as
// shipped by the Debian package dataset-fashion-mnist.
//
// Result: inputs float32 [N, 1, 28, 28], (pixel / 255 - kFashionMnistMean) /
// kFashionMnistStd; targets int64 [N] in [0, 10); name "fashion-mnist". The official
// files give N = 60000 (train) and 10000 (test); other counts are accepted.
// Errors: loom::DataError naming the file and the cause (missing file, with how to
// install the package; corrupt or truncated file; image and label counts that differ;
// images that are not 28x28; a label outside [0, 10)).
// Thread-safety: reentrant.
#pragma once

#include <string>

#include "loom/data/dataset.h"

namespace loom::data {

// The training set's pixel mean and standard deviation on the [0, 1] scale.
inline constexpr float kFashionMnistMean = 0.2860f;
inline constexpr float kFashionMnistStd = 0.3530f;
inline constexpr int64_t kFashionMnistClasses = 10;

// Where dataset-fashion-mnist installs the files: /usr/share/datasets/fashion-mnist.
std::string default_fashion_mnist_dir();

// The four file names: train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
// t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz.
std::string fashion_mnist_images_file(Split split);
std::string fashion_mnist_labels_file(Split split);

// `dir` empty means default_fashion_mnist_dir().
Dataset load_fashion_mnist(const std::string& dir, Split split);

}  // namespace loom::data
