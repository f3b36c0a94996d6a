#include "loom/trace/tracer.h"

#include <nlohmann/json.hpp>

#include "loom/core/atomic_file.h"

namespace loom::trace {

Tracer::Tracer(int rank, bool enabled) : rank_(rank), enabled_(enabled) {}

int64_t Tracer::now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void Tracer::record(const std::string& name, const char* category, int64_t start_us, int64_t end_us, int lane) {
  if (!enabled_) return;
  std::lock_guard<std::mutex> lock(mutex_);
  events_.push_back(Event{name, category, start_us, end_us - start_us, lane});
}

Tracer::Span::Span(Tracer* tracer, const char* name, const char* category, int lane)
    : tracer_(tracer), name_(name), category_(category), lane_(lane), start_(tracer ? now_us() : 0) {}

Tracer::Span::~Span() {
  if (tracer_) tracer_->record(name_, category_, start_, now_us(), lane_);
}

std::string Tracer::events_json() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::string out;
  auto append = [&](const nlohmann::json& j) {
    if (!out.empty()) out += ",\n";
    out += j.dump();
  };
  append(
      {{"name", "process_name"}, {"ph", "M"}, {"pid", rank_}, {"args", {{"name", "rank " + std::to_string(rank_)}}}});
  for (const auto& e : events_) {
    append({{"name", e.name},
            {"cat", e.category},
            {"ph", "X"},
            {"ts", e.start_us},
            {"dur", e.dur_us},
            {"pid", rank_},
            {"tid", e.lane}});
  }
  return out;
}

void Tracer::write_file(const std::string& path, const std::vector<std::string>& bodies) {
  std::string out = "{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n";
  bool first = true;
  for (const auto& b : bodies) {
    if (b.empty()) continue;
    if (!first) out += ",\n";
    out += b;
    first = false;
  }
  out += "\n]}\n";
  write_file_atomic(path, out);
}

}  // namespace loom::trace
