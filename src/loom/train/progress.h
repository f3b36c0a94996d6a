// Progress: what a person watching the run sees. On a terminal, one bar line redrawn in
// place ("epoch 1/3 [=====>    ] 230/468 loss 0.412 12.3k samples/s"); otherwise (logs,
// CI, under the launcher) a plain log line every `every` steps. Only rank 0 shows it.
#pragma once

#include <cstdint>
#include <string>

namespace loom::train {

class Progress {
 public:
  enum class Mode { bar, lines, off };
  // auto | bar | lines | off ("auto": bar when stderr is a terminal); else a ConfigError
  // naming --progress.
  static Mode parse_mode(const std::string& mode_name);
  Progress(const std::string& mode_name, int64_t total_steps, int64_t steps_per_epoch, int64_t epochs, int64_t every);
  void update(int64_t step, int64_t epoch, double loss, double samples_per_s);
  void message(const std::string& text);  // a line that does not break the bar
  void finish();

 private:
  Mode mode_;
  int64_t total_, per_epoch_, epochs_, every_;
  bool bar_drawn_ = false;
};

}  // namespace loom::train
