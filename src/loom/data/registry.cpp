#include <fmt/ranges.h>

#include <algorithm>

#include "loom/core/error.h"
#include "loom/data/csv_reader.h"
#include "loom/data/dataset.h"
#include "loom/data/fashion_mnist.h"
#include "loom/data/file_dataset.h"
#include "loom/data/idx_source.h"
#include "loom/data/npy_reader.h"
#include "loom/data/tensor_file.h"

namespace loom::data {

namespace {

// "npy:a.npy,b.npy" -> {"a.npy", "b.npy"}; a ConfigError unless exactly two non-empty
// paths.
std::pair<std::string, std::string> two_paths(const std::string& name, const std::string& spec, const char* form) {
  const size_t comma = spec.find(',');
  const bool ok = comma != std::string::npos && comma > 0 && comma + 1 < spec.size() &&
                  spec.find(',', comma + 1) == std::string::npos;
  LOOM_CHECK(ok, ConfigError, "data source '{}' needs two files: {}", name, form);
  return {spec.substr(0, comma), spec.substr(comma + 1)};
}

Dataset load_file_source(const std::string& kind, const std::string& spec, const DataOptions& options, Split split) {
  const std::string& name = options.name;
  if (kind == "npy") {
    const auto [inputs, targets] = two_paths(name, spec, "npy:INPUTS.npy,TARGETS.npy");
    Dataset d = make_file_dataset(name, read_npy(inputs), read_npy(targets), options.allow_nan);
    d.memory_mapped = true;
    return d;
  }
  LOOM_CHECK(!spec.empty(), ConfigError, "data source '{}' names no file", name);
  if (kind == "tensors") {
    TensorPair pair = read_tensor_file(spec);
    return make_file_dataset(name, std::move(pair.inputs), std::move(pair.targets), options.allow_nan);
  }
  if (kind == "csv") {
    CsvTable table = read_csv(spec, options.target_column);
    return make_file_dataset(name, std::move(table.inputs), std::move(table.targets), options.allow_nan);
  }
  return load_idx_source(name, spec, split);
}

}  // namespace

std::vector<std::string> dataset_names() { return {"fashion-mnist", "synthetic"}; }

std::vector<std::string> source_kinds() { return {"npy", "tensors", "csv", "idx"}; }

bool has_test_split(const std::string& name) {
  const auto names = dataset_names();
  return std::find(names.begin(), names.end(), name) != names.end();
}

Dataset load_dataset(const DataOptions& options, Split split) {
  Dataset d;
  const size_t colon = options.name.find(':');
  if (options.name == "fashion-mnist") {
    d = load_fashion_mnist(options.dir, split);
  } else if (options.name == "synthetic") {
    d = make_synthetic(options.synthetic, split);
  } else if (colon == std::string::npos) {
    LOOM_THROW(ConfigError, "unknown data set '{}' (known: {}; or a file source {}:...)", options.name,
               fmt::join(dataset_names(), ", "), fmt::join(source_kinds(), ":..., "));
  } else {
    const std::string kind = options.name.substr(0, colon);
    const auto kinds = source_kinds();
    LOOM_CHECK(std::find(kinds.begin(), kinds.end(), kind) != kinds.end(), ConfigError,
               "unknown data source kind '{}' in '{}' (known kinds: {}; built-in sets: {})", kind, options.name,
               fmt::join(kinds, ", "), fmt::join(dataset_names(), ", "));
    d = load_file_source(kind, options.name.substr(colon + 1), options, split);
  }
  d.reject_nan = !options.allow_nan;
  return d;
}

}  // namespace loom::data
