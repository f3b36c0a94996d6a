#include "loom/train/progress.h"

#include <unistd.h>

#include <cstdio>

#include "loom/core/choice.h"
#include "loom/core/log.h"

namespace loom::train {

Progress::Progress(const std::string& mode_name, int64_t total_steps, int64_t steps_per_epoch, int64_t epochs,
                   int64_t every)
    : total_(total_steps), per_epoch_(steps_per_epoch), epochs_(epochs), every_(every) {
  mode_ = parse_mode(mode_name);
}

Progress::Mode Progress::parse_mode(const std::string& mode_name) {
  const Mode terminal = ::isatty(STDERR_FILENO) ? Mode::bar : Mode::lines;
  const Choice<Mode> modes[] = {{"auto", terminal}, {"bar", Mode::bar}, {"lines", Mode::lines}, {"off", Mode::off}};
  return parse_choice("progress", mode_name, modes);
}

void Progress::update(int64_t step, int64_t epoch, double loss, double samples_per_s) {
  if (mode_ == Mode::off) return;
  const int64_t in_epoch = per_epoch_ > 0 ? (step - 1) % per_epoch_ + 1 : step;
  const bool last = step == total_;
  if (mode_ == Mode::lines) {
    if (step % every_ == 0 || last) {
      log::info("epoch {}/{} step {}/{} ({} total) loss {:.4f} {:.0f} samples/s", epoch + 1, epochs_, in_epoch,
                per_epoch_, step, loss, samples_per_s);
    }
    return;
  }
  // Redraw at most ~20 times per epoch plus the last step: cheap even for tiny steps.
  const int64_t stride = std::max<int64_t>(1, per_epoch_ / 50);
  if (step % stride != 0 && !last) return;
  constexpr int kWidth = 30;
  const double frac = per_epoch_ > 0 ? static_cast<double>(in_epoch) / per_epoch_ : 1.0;
  const int filled = static_cast<int>(frac * kWidth);
  std::string bar(kWidth, ' ');
  for (int i = 0; i < filled; ++i) bar[i] = '=';
  if (filled < kWidth) bar[filled] = '>';
  std::fprintf(stderr, "\r\033[Kepoch %lld/%lld [%s] %lld/%lld loss %.4f %.0f samples/s",
               static_cast<long long>(epoch + 1), static_cast<long long>(epochs_), bar.c_str(),
               static_cast<long long>(in_epoch), static_cast<long long>(per_epoch_), loss, samples_per_s);
  std::fflush(stderr);
  bar_drawn_ = true;
}

void Progress::message(const std::string& text) {
  if (bar_drawn_) {
    std::fprintf(stderr, "\r\033[K");
    bar_drawn_ = false;
  }
  log::info("{}", text);
}

void Progress::finish() {
  if (bar_drawn_) std::fprintf(stderr, "\n");
  bar_drawn_ = false;
}

}  // namespace loom::train
