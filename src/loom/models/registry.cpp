#include "loom/models/registry.h"

#include <torch/torch.h>

#include <functional>
#include <map>
#include <mutex>
#include <numeric>

#include "loom/core/error.h"

namespace loom::models {

namespace {

int64_t product(const std::vector<int64_t>& v) {
  return std::accumulate(v.begin(), v.end(), int64_t{1}, std::multiplies<>());
}

torch::nn::Sequential mlp(const ModelOptions& o) {
  return torch::nn::Sequential(torch::nn::Flatten(), torch::nn::Linear(product(o.sample_shape), 256), torch::nn::ReLU(),
                               torch::nn::Linear(256, 128), torch::nn::ReLU(), torch::nn::Linear(128, o.num_classes));
}

torch::nn::Sequential cnn(const ModelOptions& o) {
  LOOM_CHECK(o.sample_shape.size() == 3, ModelError,
             "model 'cnn' needs image inputs (C, H, W); this data set has samples of {} dimensions",
             o.sample_shape.size());
  const int64_t c = o.sample_shape[0], h = o.sample_shape[1] / 4, w = o.sample_shape[2] / 4;
  using namespace torch::nn;
  return Sequential(Conv2d(Conv2dOptions(c, 32, 3).padding(1)), ReLU(), MaxPool2d(2),
                    Conv2d(Conv2dOptions(32, 64, 3).padding(1)), ReLU(), MaxPool2d(2), Flatten(),
                    Linear(64 * h * w, 128), ReLU(), Linear(128, o.num_classes));
}

torch::nn::Sequential deep_mlp(const ModelOptions& o) {
  LOOM_CHECK(o.depth >= 2, ModelError, "model 'deep-mlp' needs --depth of at least 2, got {}", o.depth);
  LOOM_CHECK(o.width >= 1, ModelError, "model 'deep-mlp' needs a positive --width, got {}", o.width);
  torch::nn::Sequential s{torch::nn::Flatten()};
  s->push_back(torch::nn::Linear(product(o.sample_shape), o.width));
  s->push_back(torch::nn::ReLU());
  for (int64_t i = 0; i < o.depth - 2; ++i) {
    s->push_back(torch::nn::Linear(o.width, o.width));
    s->push_back(torch::nn::ReLU());
  }
  s->push_back(torch::nn::Linear(o.width, o.num_classes));
  return s;
}

const std::map<std::string, std::function<torch::nn::Sequential(const ModelOptions&)>>& registry() {
  static const std::map<std::string, std::function<torch::nn::Sequential(const ModelOptions&)>> r = {
      {"mlp", mlp}, {"cnn", cnn}, {"deep-mlp", deep_mlp}};
  return r;
}

}  // namespace

std::vector<std::string> model_names() {
  std::vector<std::string> names;
  for (const auto& [name, _] : registry()) names.push_back(name);
  return names;
}

torch::nn::Sequential make_model(const std::string& name, const ModelOptions& options) {
  const auto it = registry().find(name);
  if (it == registry().end()) {
    LOOM_THROW(ConfigError, "--model: unknown model '{}' (known: {})", name, fmt::join(model_names(), ", "));
  }
  LOOM_CHECK(!options.sample_shape.empty() && product(options.sample_shape) > 0, ModelError,
             "model '{}': empty sample shape", name);
  // Initialise from the model seed without disturbing (or depending on) global RNG state.
  // Models built by several threads at once (ranks as threads) must not interleave here.
  static std::mutex construction;
  std::lock_guard<std::mutex> lock(construction);
  at::Generator global = at::detail::getDefaultCPUGenerator();
  const at::Tensor saved = global.get_state();
  torch::manual_seed(options.seed);
  torch::nn::Sequential model{nullptr};
  try {
    model = it->second(options);
  } catch (...) {
    global.set_state(saved);
    throw;
  }
  global.set_state(saved);
  return model;
}

}  // namespace loom::models
