// MetricsWriter: the metrics contract of DESIGN.md, as JSON lines.
//
//   {"event":"step","step":..,"epoch":..,"loss":..,"samples_per_s":..,...}
//   {"event":"eval","epoch":..,"test_loss":..,"test_accuracy":..,"test_mse":..}
//   {"event":"summary","strategy":"..","world_size":..,"model":"..","loss":"..","steps":..,
//    "samples":..,"wall_s":..,"samples_per_s":..,"final_train_loss":..,"evaluated":..,
//    "test_loss":..,"test_accuracy":..,"test_mse":..,...}   (last)
//
// test_accuracy is a number for classification losses (cross-entropy, bce-with-logits),
// test_mse for mse; the other is null, and all three are null when nothing was evaluated
// ("evaluated": false: --no-eval, or a file data set without --eval-data).
//
// A run given the planner's prediction (--predicted-samples-per-s X, X > 0) also has
// "predicted_samples_per_s": X and "prediction_error": samples_per_s / X - 1 (+0.1: the
// run was 10% faster than predicted); without one both keys are absent.
//
// Lines go to "<path>.partial" as they happen (tail it to watch a run); finish() renames
// it to <path>. A writer destroyed without finish() removes the partial file, so a
// failed run leaves no half-written metrics file. An empty path disables the writer.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace loom::train {

struct StepRecord {
  int64_t step = 0;   // 1-based count of completed steps
  int64_t epoch = 0;  // 0-based
  double loss = 0;    // mean training loss over the steps since the last record
  double samples_per_s = 0;
  double lr = 0;
  double step_ms = 0;  // mean step time since the last record
};

struct EvalRecord {
  int64_t epoch = 0;
  int64_t step = 0;
  double test_loss = 0;
  double test_accuracy = -1;  // -1: not this loss's metric
  double test_mse = -1;       // -1: not this loss's metric
};

struct Summary {
  std::string strategy;
  int world_size = 1;
  std::string model;
  std::string data;
  int64_t steps = 0;
  int64_t samples = 0;
  int64_t epochs = 0;
  int64_t batch_size = 0;
  int threads = 1;
  double wall_s = 0;         // the whole run, start-up included
  double train_s = 0;        // training steps only
  double samples_per_s = 0;  // samples / train_s, all workers together
  double final_train_loss = 0;
  int64_t skipped_steps = 0;  // --skip-nonfinite: steps without an update
  std::string loss = "cross-entropy";
  bool evaluated = false;
  double test_loss = 0;
  double test_accuracy = -1;  // -1: not evaluated, or not a classification loss
  double test_mse = -1;       // -1: not evaluated, or not mse
  // Data-parallel runs (single, allreduce): bytes of optimizer state and of gradients
  // each data rank holds at the end, by rank; empty: not reported (not in the JSON).
  std::vector<int64_t> optimizer_state_bytes;
  std::vector<int64_t> gradient_bytes;
  // --predicted-samples-per-s: the planner's prediction; 0: none (not in the JSON).
  double predicted_samples_per_s = 0;
  // samples_per_s / predicted_samples_per_s - 1 (only meaningful with a prediction).
  double prediction_error() const;
};

class MetricsWriter {
 public:
  explicit MetricsWriter(std::string path);
  ~MetricsWriter();
  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;

  bool enabled() const { return file_ != nullptr; }
  void write(const StepRecord& r);
  void write(const EvalRecord& r);
  // Writes the summary record and publishes the file.
  void finish(const Summary& s);

  static std::string to_json(const Summary& s);

 private:
  void line(const std::string& json);
  std::string path_;
  std::FILE* file_ = nullptr;
};

}  // namespace loom::train
