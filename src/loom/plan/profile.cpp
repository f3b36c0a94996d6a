#include "loom/plan/profile.h"

#include <torch/torch.h>

#include <algorithm>
#include <functional>
#include <nlohmann/json.hpp>

#include "loom/core/error.h"
#include "loom/pipeline/layer_costs.h"

namespace loom::plan {

int64_t ModelProfile::param_count() const {
  int64_t n = 0;
  for (const auto& l : layers) n += l.param_count;
  return n;
}

double ModelProfile::compute_s(int64_t batch) const {
  const auto it = std::find(batches.begin(), batches.end(), batch);
  LOOM_CHECK(it != batches.end(), ConfigError, "the profile of {} has no batch of {} (profiled: {})", model, batch,
             fmt::join(batches, ","));
  const size_t k = static_cast<size_t>(it - batches.begin());
  double s = 0;
  for (const auto& l : layers) s += l.times[k].forward_s + l.times[k].backward_s;
  return s;
}

std::string ModelProfile::to_json() const {
  nlohmann::json j;
  j["model"] = model;
  j["sample_shape"] = sample_shape;
  j["threads"] = threads;
  j["repeats"] = repeats;
  j["batches"] = batches;
  j["param_count"] = param_count();
  j["layers"] = nlohmann::json::array();
  for (const auto& l : layers) {
    nlohmann::json lj{{"name", l.name}, {"param_count", l.param_count}, {"param_bytes", l.param_bytes}};
    lj["times"] = nlohmann::json::array();
    for (const auto& t : l.times) {
      lj["times"].push_back({{"batch", t.batch},
                             {"forward_s", t.forward_s},
                             {"backward_s", t.backward_s},
                             {"output_bytes", t.output_bytes}});
    }
    j["layers"].push_back(lj);
  }
  return j.dump(1);
}

ModelProfile ModelProfile::from_json(const std::string& text, const std::string& source) {
  try {
    const auto j = nlohmann::json::parse(text);
    ModelProfile p;
    p.model = j.at("model").get<std::string>();
    p.sample_shape = j.at("sample_shape").get<std::vector<int64_t>>();
    p.threads = j.at("threads").get<int>();
    p.repeats = j.at("repeats").get<int>();
    p.batches = j.at("batches").get<std::vector<int64_t>>();
    for (const auto& lj : j.at("layers")) {
      LayerProfile l;
      l.name = lj.at("name").get<std::string>();
      l.param_count = lj.at("param_count").get<int64_t>();
      l.param_bytes = lj.at("param_bytes").get<int64_t>();
      for (const auto& tj : lj.at("times")) {
        l.times.push_back({tj.at("batch").get<int64_t>(), tj.at("forward_s").get<double>(),
                           tj.at("backward_s").get<double>(), tj.at("output_bytes").get<int64_t>()});
      }
      LOOM_CHECK(l.times.size() == p.batches.size(), DataError, "{}: layer {} has {} timings for {} batch sizes",
                 source, l.name, l.times.size(), p.batches.size());
      p.layers.push_back(std::move(l));
    }
    return p;
  } catch (const nlohmann::json::exception& e) {
    LOOM_THROW(DataError, "{}: not a loom model profile ({})", source, e.what());
  }
}

ModelProfile profile_model(torch::nn::Sequential& model, const std::string& name,
                           const std::vector<int64_t>& sample_shape, const ProfileOptions& options) {
  LOOM_CHECK(options.threads >= 1 && options.repeats >= 1, ConfigError,
             "profile: threads ({}) and repeats ({}) must be >= 1", options.threads, options.repeats);
  ModelProfile p;
  p.model = name;
  p.sample_shape = sample_shape;
  p.threads = options.threads;
  p.repeats = options.repeats;
  p.batches = options.batches.empty() ? std::vector<int64_t>{1} : options.batches;
  for (int64_t b : p.batches) LOOM_CHECK(b >= 1, ConfigError, "profile: batch sizes must be >= 1, got {}", b);
  torch::set_num_threads(options.threads);
  const auto children = model->named_children();
  for (const auto& child : children) p.layers.push_back({child.key(), 0, 0, {}});
  for (int64_t b : p.batches) {
    std::vector<int64_t> shape{b};
    shape.insert(shape.end(), sample_shape.begin(), sample_shape.end());
    const auto layers = pipeline::profile_layers(model, torch::ones(shape), options.repeats);
    for (size_t i = 0; i < layers.size() && i < p.layers.size(); ++i) {
      p.layers[i].param_count = layers[i].param_count;
      p.layers[i].param_bytes = layers[i].param_bytes;
      p.layers[i].times.push_back({b, layers[i].forward_s, layers[i].backward_s, layers[i].output_bytes});
    }
  }
  return p;
}

std::vector<int64_t> batches_that_matter(int64_t global_batch, int max_procs) {
  LOOM_CHECK(global_batch >= 1 && max_procs >= 1, ConfigError,
             "batches_that_matter: the batch ({}) and the processes ({}) must be >= 1", global_batch, max_procs);
  std::vector<int64_t> out;
  for (int k = 1; k <= max_procs; ++k) out.push_back((global_batch + k - 1) / k);
  for (int64_t b = global_batch; b >= 1; b /= 2) out.push_back(b);
  std::sort(out.begin(), out.end(), std::greater<>());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace loom::plan
