#include "loom/data/partitioner.h"

#include <cmath>
#include <sstream>

#include "loom/core/choice.h"
#include "loom/core/error.h"
#include "loom/data/partitioners/proportional_partitioner.h"
#include "loom/data/partitioners/random_partitioner.h"
#include "loom/data/partitioners/strided_partitioner.h"

namespace loom::data {

namespace {
constexpr Choice<Scheme> kSchemes[] = {
    {"strided", Scheme::strided}, {"random", Scheme::random}, {"proportional", Scheme::proportional}};
}  // namespace

Scheme parse_scheme(const std::string& name, const char* flag) { return parse_choice(flag, name, kSchemes); }
const char* scheme_name(Scheme scheme) { return choice_name(scheme, kSchemes); }

void Partitioner::set_weights(const std::vector<double>&) {
  LOOM_THROW(ConfigError, "--shard-weights: the {} scheme has no weights (use --partition proportional)",
             scheme_name(options_.scheme));
}

void Partitioner::check_position(int rank, int64_t epoch, int64_t step) const {
  LOOM_CHECK(rank >= 0 && rank < options_.world_size, ConfigError, "partition: rank {} is outside 0..{}", rank,
             options_.world_size - 1);
  LOOM_CHECK(epoch >= 0, ConfigError, "partition: epoch must not be negative, got {}", epoch);
  LOOM_CHECK(step >= 0 && step < steps_per_epoch(), ConfigError, "partition: step {} is outside 0..{}", step,
             steps_per_epoch() - 1);
}

std::vector<double> parse_weights(const std::string& text) {
  std::vector<double> out;
  if (text.empty()) return out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t used = 0;
    double w = 0;
    try {
      w = std::stod(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    LOOM_CHECK(used > 0 && used == item.size() && std::isfinite(w), ConfigError,
               "--shard-weights: '{}' is not a number (expected e.g. 3,1,1 or auto)", item);
    LOOM_CHECK(w >= 0, ConfigError, "--shard-weights: weights must not be negative, got {}", w);
    out.push_back(w);
  }
  LOOM_CHECK(!text.empty() && text.back() != ',', ConfigError, "--shard-weights: '{}' ends with a comma", text);
  return out;
}

std::unique_ptr<Partitioner> make_partitioner(const PartitionOptions& o) {
  LOOM_CHECK(o.world_size >= 1, ConfigError, "partition: world size must be at least 1, got {}", o.world_size);
  LOOM_CHECK(o.num_samples >= 1, ConfigError, "partition: the training set is empty");
  LOOM_CHECK(o.batch_size >= 1, ConfigError, "--batch-size must be at least 1, got {}", o.batch_size);
  LOOM_CHECK(o.batch_size <= o.num_samples, ConfigError, "--batch-size {} is larger than the training set ({} samples)",
             o.batch_size, o.num_samples);
  LOOM_CHECK(o.weights.empty() || o.scheme == Scheme::proportional, ConfigError,
             "--shard-weights applies to --partition proportional, not {}", scheme_name(o.scheme));
  switch (o.scheme) {
    case Scheme::strided: return std::make_unique<StridedPartitioner>(o);
    case Scheme::random: return std::make_unique<RandomPartitioner>(o);
    case Scheme::proportional: return std::make_unique<ProportionalPartitioner>(o);
  }
  LOOM_THROW(ConfigError, "unknown partition scheme {}", static_cast<int>(o.scheme));
}

}  // namespace loom::data
