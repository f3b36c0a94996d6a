#include "loom/launch/line_prefixer.h"

#include <algorithm>

namespace loom::launch {

LinePrefixer::LinePrefixer(std::string prefix, std::size_t max_line)
    : prefix_(std::move(prefix)), max_line_(std::max<std::size_t>(max_line, 1)) {}

void LinePrefixer::append_line(std::string& out, std::string_view line) const {
  out += prefix_;
  out += line;
  out += '\n';
}

std::string LinePrefixer::feed(std::string_view bytes) {
  std::string out;
  while (!bytes.empty()) {
    const std::size_t newline = bytes.find('\n');
    std::string_view text = bytes.substr(0, newline);  // the whole rest when npos
    bytes.remove_prefix(newline == std::string_view::npos ? bytes.size() : newline + 1);
    // A line that outgrows max_line is emitted in full pieces first.
    while (partial_.size() + text.size() > max_line_) {
      const std::size_t room = max_line_ - partial_.size();
      partial_.append(text.substr(0, room));
      append_line(out, partial_);
      partial_.clear();
      text.remove_prefix(room);
    }
    if (newline == std::string_view::npos) {
      partial_.append(text);
    } else if (partial_.empty()) {
      append_line(out, text);
    } else {
      partial_.append(text);
      append_line(out, partial_);
      partial_.clear();
    }
  }
  return out;
}

std::string LinePrefixer::flush() {
  if (partial_.empty()) return {};
  std::string out;
  append_line(out, partial_);
  partial_.clear();
  return out;
}

}  // namespace loom::launch
