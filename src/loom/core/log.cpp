#include "loom/core/log.h"

#include <atomic>
#include <cstdio>
#include <mutex>

#include "loom/core/error.h"

namespace loom::log {

namespace {
std::atomic<int> g_rank{-1};
std::atomic<Level> g_level{Level::info};
std::mutex g_mutex;

const char* level_name(Level l) {
  switch (l) {
    case Level::debug: return "debug";
    case Level::info: return "info";
    case Level::warn: return "warning";
    case Level::error: return "error";
    default: return "";
  }
}
void emit(const std::string& line) {
  std::lock_guard<std::mutex> lock(g_mutex);
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}
}  // namespace

void set_rank(int r) { g_rank = r; }
int rank() { return g_rank; }
void set_level(Level l) { g_level = l; }
Level level() { return g_level; }

Level parse_level(const std::string& name) {
  if (name == "debug") return Level::debug;
  if (name == "info") return Level::info;
  if (name == "warn" || name == "warning") return Level::warn;
  if (name == "error") return Level::error;
  if (name == "off") return Level::off;
  LOOM_THROW(ConfigError, "--log-level: unknown level '{}' (expected debug, info, warn, error or off)", name);
}

void write(Level l, std::string_view message) {
  const int r = g_rank;
  emit(r >= 0 ? fmt::format("[loom rank {}] {}: {}\n", r, level_name(l), message)
              : fmt::format("[loom] {}: {}\n", level_name(l), message));
}

void error_line(const std::string& message, const std::string& location) {
  const int r = g_rank;
  std::string line = r >= 0 ? fmt::format("loom: rank {}: {}", r, message) : fmt::format("loom: {}", message);
  if (!location.empty()) line += fmt::format(" [at {}]", location);
  emit(line + "\n");
}

}  // namespace loom::log
