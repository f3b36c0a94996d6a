// The one place that maps a data-set name (the CLI's --data, the config's data.name) to
// its loader.
// Thread-safety: reentrant.
#pragma once

#include <string>
#include <vector>

#include "loom/data/dataset.h"
#include "loom/data/synthetic.h"

namespace loom::data {

struct DataOptions {
  std::string name = "fashion-mnist";  // one of dataset_names()
  std::string dir;                     // fashion-mnist's files; empty: the default dir
  SyntheticOptions synthetic;          // used when name == "synthetic"; dir is ignored
};

// The known names, in a stable order: {"fashion-mnist", "synthetic"}.
std::vector<std::string> dataset_names();

// An unknown name throws loom::ConfigError listing the known names; loading errors are
// the loaders' own (loom::DataError, loom::ConfigError).
Dataset load_dataset(const DataOptions& options, Split split);

}  // namespace loom::data
