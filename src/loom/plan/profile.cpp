#include "loom/plan/profile.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <nlohmann/json.hpp>

#include "loom/core/dist_env.h"
#include "loom/core/error.h"
#include "loom/pipeline/layer_costs.h"

namespace loom::plan {

int64_t ModelProfile::param_count() const {
  int64_t n = 0;
  for (const auto& l : layers) n += l.param_count;
  return n;
}

int64_t ModelProfile::param_bytes() const {
  int64_t n = 0;
  for (const auto& l : layers) n += l.param_bytes;
  return n;
}

void ModelProfile::scale_times(double factor) {
  LOOM_CHECK(std::isfinite(factor) && factor > 0, ConfigError, "profile: a scale must be positive, got {}", factor);
  for (auto& l : layers) {
    for (auto& t : l.times) {
      t.forward_s *= factor;
      t.backward_s *= factor;
    }
  }
  for (double& s : step_s) s *= factor;
  optimizer_s *= factor;
  training_scale *= factor;
}

namespace {

// Value at `batch` of a quantity measured at `batches` (any order): exact, linear between
// the two measured batches around it, else proportional to the batch from the nearest end.
double at_batch(const std::vector<int64_t>& batches, const std::vector<double>& values, int64_t batch) {
  LOOM_CHECK(!batches.empty() && batches.size() == values.size(), ConfigError, "profile: {} values for {} batch sizes",
             values.size(), batches.size());
  size_t lo = batches.size(), hi = batches.size();  // largest batch <= b, smallest batch >= b
  for (size_t k = 0; k < batches.size(); ++k) {
    if (batches[k] == batch) return values[k];
    if (batches[k] < batch && (lo == batches.size() || batches[k] > batches[lo])) lo = k;
    if (batches[k] > batch && (hi == batches.size() || batches[k] < batches[hi])) hi = k;
  }
  if (lo == batches.size()) return values[hi] * static_cast<double>(batch) / static_cast<double>(batches[hi]);
  if (hi == batches.size()) return values[lo] * static_cast<double>(batch) / static_cast<double>(batches[lo]);
  const double w = static_cast<double>(batch - batches[lo]) / static_cast<double>(batches[hi] - batches[lo]);
  return values[lo] + w * (values[hi] - values[lo]);
}

}  // namespace

LayerTimes ModelProfile::layer_at(size_t i, int64_t batch) const {
  LOOM_CHECK(i < layers.size() && batch >= 1, ConfigError, "profile of {}: no layer {} or batch {}", model, i, batch);
  std::vector<double> f, b, o;
  for (const auto& t : layers[i].times) {
    f.push_back(t.forward_s);
    b.push_back(t.backward_s);
    o.push_back(static_cast<double>(t.output_bytes));
  }
  return {batch, at_batch(batches, f, batch), at_batch(batches, b, batch),
          static_cast<int64_t>(at_batch(batches, o, batch) + 0.5)};
}

double ModelProfile::step_at(int64_t batch) const {
  if (!step_s.empty()) return at_batch(batches, step_s, batch);
  double s = optimizer_s;
  for (size_t i = 0; i < layers.size(); ++i) {
    const LayerTimes t = layer_at(i, batch);
    s += t.forward_s + t.backward_s;
  }
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
  j["step_s"] = step_s;
  j["optimizer"] = optimizer;
  j["optimizer_s"] = optimizer_s;
  j["optimizer_state_bytes"] = optimizer_state_bytes;
  j["param_tensors"] = param_tensors;
  j["training_scale"] = training_scale;
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
    // Optional: a hand-written profile may leave out the whole-step and optimizer times.
    p.step_s = j.value("step_s", std::vector<double>{});
    p.optimizer = j.value("optimizer", std::string("sgd"));
    p.optimizer_s = j.value("optimizer_s", 0.0);
    p.optimizer_state_bytes = j.value("optimizer_state_bytes", int64_t{0});
    p.param_tensors = j.value("param_tensors", int64_t{0});
    p.training_scale = j.value("training_scale", 1.0);
    LOOM_CHECK(p.step_s.empty() || p.step_s.size() == p.batches.size(), DataError,
               "{}: {} step times for {} batch sizes", source, p.step_s.size(), p.batches.size());
    LOOM_CHECK(!p.batches.empty(), DataError, "{}: no batch sizes", source);
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

namespace {

double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

constexpr double kMinTimedS = 0.15;
constexpr int kMaxRuns = 100;

// The plain single-process training step at every batch (p.step_s), the optimizer step
// alone (p.optimizer_s) and its state bytes, with options.optimizer. The parameters are
// restored and the gradients dropped afterwards, so the model is left as it was.
void time_training_steps(torch::nn::Sequential& model, const std::vector<int64_t>& sample_shape,
                         const ProfileOptions& options, ModelProfile& p) {
  const std::vector<at::Tensor> params = model->parameters();
  std::vector<at::Tensor> saved;
  {
    torch::NoGradGuard no_grad;
    for (const auto& t : params) saved.push_back(t.detach().clone());
  }
  auto optimizer = optim::make_optimizer(params, options.optimizer);
  p.optimizer = optim::optimizer_name(options.optimizer.kind);
  auto one_step = [&](const at::Tensor& x) {
    optimizer->zero_grad();
    const at::Tensor out = model->forward(x);
    const at::Tensor loss = out.dim() == 2 && out.is_floating_point()
                                ? torch::nn::functional::cross_entropy(out, torch::zeros({out.size(0)}, torch::kLong))
                                : out.sum();
    if (loss.requires_grad()) loss.backward();
    (void)loss.item<double>();  // the loop reads the loss back every step
    optimizer->step();
  };
  for (int64_t b : p.batches) {
    std::vector<int64_t> shape{b};
    shape.insert(shape.end(), sample_shape.begin(), sample_shape.end());
    // Uniform [0, 1) inputs, like pixel data: with constant inputs (torch::ones) the
    // CNN's step ran 1.3-1.7x faster than on Fashion-MNIST, in the plain loop and here.
    const at::Tensor x = torch::rand(shape);
    one_step(x);  // warm-up (and the optimizer's state)
    one_step(x);
    // At least `repeats` runs, and for short steps enough to fill kMinTimedS (this
    // machine's noise is a good part of a millisecond), at most kMaxRuns.
    std::vector<double> runs;
    double total = 0;
    while (static_cast<int>(runs.size()) < options.repeats ||
           (total < kMinTimedS && static_cast<int>(runs.size()) < kMaxRuns)) {
      const auto t0 = std::chrono::steady_clock::now();
      one_step(x);
      runs.push_back(seconds_since(t0));
      total += runs.back();
    }
    p.step_s.push_back(median_of(runs));
  }
  std::vector<double> runs;
  for (int r = 0; r < options.repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    optimizer->step();
    runs.push_back(seconds_since(t0));
  }
  p.optimizer_s = median_of(runs);
  p.optimizer_state_bytes = optim::state_bytes(*optimizer);
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params.size(); ++i) {
    params[i].copy_(saved[i]);
    params[i].mutable_grad() = at::Tensor();
  }
}

}  // namespace

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
  set_blas_threads(options.threads);  // OpenBLAS keeps its own pool, sized by the cores (core/dist_env.h)
  p.param_tensors = static_cast<int64_t>(model->parameters().size());
  const auto children = model->named_children();
  for (const auto& child : children) p.layers.push_back({child.key(), 0, 0, {}});
  time_training_steps(model, sample_shape, options, p);
  for (size_t k = 0; k < p.batches.size(); ++k) {
    const int64_t b = p.batches[k];
    std::vector<int64_t> shape{b};
    shape.insert(shape.end(), sample_shape.begin(), sample_shape.end());
    // As many runs as fill about kMinTimedS, at least `repeats`, at most kMaxRuns / 2.
    const int repeats = std::clamp(static_cast<int>(kMinTimedS / std::max(p.step_s[k], 1e-6)), options.repeats,
                                   std::max(options.repeats, kMaxRuns / 2));
    const auto layers = pipeline::profile_layers(model, torch::rand(shape), repeats);
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
