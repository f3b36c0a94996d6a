#include "loom/data/idx_source.h"

#include <ATen/ATen.h>

#include <filesystem>

#include "loom/core/error.h"
#include "loom/data/idx_reader.h"

namespace loom::data {

namespace {

// DIR/BASE.gz when it exists or when BASE does not (so a missing pair is reported
// under the .gz name, with a hint), else DIR/BASE.
std::string pick(const std::filesystem::path& dir, const std::string& base) {
  const std::filesystem::path gz = dir / (base + ".gz");
  const std::filesystem::path plain = dir / base;
  std::error_code ec;
  if (!std::filesystem::exists(gz, ec) && std::filesystem::exists(plain, ec)) return plain.string();
  return gz.string();
}

}  // namespace

Dataset load_idx_source(const std::string& name, const std::string& spec, Split split) {
  std::string images_path;
  std::string labels_path;
  std::string hint;
  const size_t comma = spec.find(',');
  if (comma == std::string::npos) {
    const std::string prefix = split == Split::train ? "train" : "t10k";
    images_path = pick(spec, prefix + "-images-idx3-ubyte");
    labels_path = pick(spec, prefix + "-labels-idx1-ubyte");
    hint = "nor the same name without .gz";
  } else {
    images_path = spec.substr(0, comma);
    labels_path = spec.substr(comma + 1);
  }

  const IdxArray images = read_idx(images_path, hint);
  const int64_t n = images.dims[0];
  LOOM_CHECK(n > 0, DataError, "{}: holds 0 images", images_path);
  const IdxArray labels = read_idx(labels_path, hint);
  check_idx_labels(labels, labels_path, n, images_path);

  Dataset d;
  d.name = name;
  d.sample_shape.assign(images.dims.begin() + 1, images.dims.end());
  if (images.dims.size() == 3) d.sample_shape.insert(d.sample_shape.begin(), 1);
  if (images.dims.size() == 1) d.sample_shape = {1};
  std::vector<int64_t> shape = {n};
  shape.insert(shape.end(), d.sample_shape.begin(), d.sample_shape.end());
  d.inputs = images.data.to(at::kFloat).div_(255.0).view(shape);
  d.targets = labels.data.to(at::kLong);
  d.num_classes = d.targets.max().item<int64_t>() + 1;
  return d;
}

}  // namespace loom::data
