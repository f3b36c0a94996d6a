// Process-wide logging to stderr. Every line carries the rank once it is known:
//   [loom rank 1] info: epoch 1 step 200 loss 0.41
// Thread-safe: lines from different threads never interleave.
// The rank and level are set once at start-up (set_rank/set_level) by the entry point.
#pragma once

#include <fmt/format.h>

#include <string>
#include <string_view>

namespace loom::log {

enum class Level { debug = 0, info = 1, warn = 2, error = 3, off = 4 };

void set_rank(int rank);  // -1 (the default) omits the rank
int rank();
void set_level(Level level);
Level level();
// Parses "debug|info|warn|error|off"; throws ConfigError otherwise.
Level parse_level(const std::string& name);

void write(Level level, std::string_view message);

// The single line an entry point prints when it fails: "loom: rank 1: <message>"
// (plus " [at file:line]" when a location is given). Always printed, whatever the level.
void error_line(const std::string& message, const std::string& location = {});

template <typename... Args>
void debug(fmt::format_string<Args...> f, Args&&... args) {
  if (level() <= Level::debug) write(Level::debug, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void info(fmt::format_string<Args...> f, Args&&... args) {
  if (level() <= Level::info) write(Level::info, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void warn(fmt::format_string<Args...> f, Args&&... args) {
  if (level() <= Level::warn) write(Level::warn, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void error(fmt::format_string<Args...> f, Args&&... args) {
  if (level() <= Level::error) write(Level::error, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace loom::log
