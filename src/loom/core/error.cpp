#include "loom/core/error.h"

#include <cstring>

namespace loom {

namespace {
// Strips everything up to and including the project's "src/" or "include/" so that
// locations read "loom/data/idx_reader.cpp:42" wherever the tree was built.
const char* short_path(const char* file) {
  for (const char* marker : {"/src/", "/include/", "/tools/"}) {
    if (const char* p = std::strstr(file, marker)) return p + std::strlen(marker);
  }
  return file;
}
// One line, always: newlines in causes from libraries become " | ".
std::string one_line(std::string s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c == '\n' || c == '\r') {
      if (!out.empty() && out.back() != ' ') out += " | ";
    } else {
      out += c;
    }
  }
  while (!out.empty() && (out.back() == ' ' || out.back() == '|')) out.pop_back();
  return out;
}
}  // namespace

Error::Error(const std::string& message, const char* file, int line)
    : std::runtime_error(one_line(message)), file_(file ? short_path(file) : ""), line_(line) {}

std::string Error::location() const {
  if (!file_ || !*file_) return {};
  return std::string(file_) + ":" + std::to_string(line_);
}

}  // namespace loom
