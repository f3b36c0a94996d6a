#include "loom/train/metrics.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "loom/core/error.h"

namespace loom::train {

namespace {
// JSON has no NaN/Inf: they are written as null.
nlohmann::json num(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }
// A metric that does not apply is -1, written as null.
nlohmann::json optional(double v) { return v < 0 ? nlohmann::json(nullptr) : num(v); }
}  // namespace

double Summary::prediction_error() const { return samples_per_s / predicted_samples_per_s - 1; }

MetricsWriter::MetricsWriter(std::string path) : path_(std::move(path)) {
  if (path_.empty()) return;
  const std::string partial = path_ + ".partial";
  file_ = std::fopen(partial.c_str(), "w");
  LOOM_CHECK(file_, Error, "--metrics: cannot write {}: {}", partial, std::strerror(errno));
}

MetricsWriter::~MetricsWriter() {
  if (file_) {
    std::fclose(file_);
    std::remove((path_ + ".partial").c_str());
  }
}

void MetricsWriter::line(const std::string& json) {
  if (!file_) return;
  std::fputs(json.c_str(), file_);
  std::fputc('\n', file_);
  std::fflush(file_);
}

void MetricsWriter::write(const StepRecord& r) {
  line(nlohmann::json{{"event", "step"},
                      {"step", r.step},
                      {"epoch", r.epoch},
                      {"loss", num(r.loss)},
                      {"samples_per_s", num(r.samples_per_s)},
                      {"lr", r.lr},
                      {"step_ms", num(r.step_ms)}}
           .dump());
}

void MetricsWriter::write(const EvalRecord& r) {
  line(nlohmann::json{{"event", "eval"},
                      {"epoch", r.epoch},
                      {"step", r.step},
                      {"test_loss", num(r.test_loss)},
                      {"test_accuracy", optional(r.test_accuracy)},
                      {"test_mse", optional(r.test_mse)}}
           .dump());
}

std::string MetricsWriter::to_json(const Summary& s) {
  nlohmann::json j{{"event", "summary"},
                   {"strategy", s.strategy},
                   {"world_size", s.world_size},
                   {"model", s.model},
                   {"data", s.data},
                   {"steps", s.steps},
                   {"samples", s.samples},
                   {"epochs", s.epochs},
                   {"batch_size", s.batch_size},
                   {"threads", s.threads},
                   {"wall_s", num(s.wall_s)},
                   {"train_s", num(s.train_s)},
                   {"samples_per_s", num(s.samples_per_s)},
                   {"final_train_loss", num(s.final_train_loss)},
                   {"skipped_steps", s.skipped_steps},
                   {"loss", s.loss},
                   {"evaluated", s.evaluated},
                   {"test_loss", s.evaluated ? num(s.test_loss) : nlohmann::json(nullptr)},
                   {"test_accuracy", s.evaluated ? optional(s.test_accuracy) : nlohmann::json(nullptr)},
                   {"test_mse", s.evaluated ? optional(s.test_mse) : nlohmann::json(nullptr)}};
  if (!s.optimizer_state_bytes.empty()) j["optimizer_state_bytes"] = s.optimizer_state_bytes;
  if (!s.gradient_bytes.empty()) j["gradient_bytes"] = s.gradient_bytes;
  if (s.predicted_samples_per_s > 0) {
    j["predicted_samples_per_s"] = num(s.predicted_samples_per_s);
    j["prediction_error"] = num(s.prediction_error());
  }
  return j.dump();
}

void MetricsWriter::finish(const Summary& s) {
  if (!file_) return;
  line(to_json(s));
  const bool ok = std::fclose(file_) == 0;
  file_ = nullptr;
  const std::string partial = path_ + ".partial";
  LOOM_CHECK(ok && std::rename(partial.c_str(), path_.c_str()) == 0, Error, "--metrics: cannot write {}: {}", path_,
             std::strerror(errno));
}

}  // namespace loom::train
