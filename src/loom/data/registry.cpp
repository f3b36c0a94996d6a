#include "loom/data/dataset.h"

#include <fmt/ranges.h>

#include "loom/core/error.h"
#include "loom/data/fashion_mnist.h"

namespace loom::data {

std::vector<std::string> dataset_names() { return {"fashion-mnist", "synthetic"}; }

Dataset load_dataset(const DataOptions& options, Split split) {
  if (options.name == "fashion-mnist") return load_fashion_mnist(options.dir, split);
  if (options.name == "synthetic") return make_synthetic(options.synthetic, split);
  LOOM_THROW(ConfigError, "unknown data set '{}' (known: {})", options.name, fmt::join(dataset_names(), ", "));
}

}  // namespace loom::data
