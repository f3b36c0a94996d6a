// Tracer: spans in Chrome trace event format (open in chrome://tracing or
// https://ui.perfetto.dev). One Tracer per process; pid = rank, tid = a lane (0 = the
// training thread, others for communication threads).
//
// Thread-safe. When disabled, span() costs one branch and records nothing.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace loom::trace {

class Tracer {
 public:
  Tracer(int rank, bool enabled);

  bool enabled() const { return enabled_; }
  // Microseconds on a clock shared by all processes of this machine.
  static int64_t now_us();

  // Records a complete event [start_us, end_us).
  void record(const std::string& name, const char* category, int64_t start_us, int64_t end_us, int lane = 0);

  class Span {
   public:
    Span(Tracer* tracer, const char* name, const char* category, int lane);
    ~Span();
    Span(const Span&) = delete;
    Span& operator=(const Span&) = delete;

   private:
    Tracer* tracer_;
    const char* name_;
    const char* category_;
    int lane_;
    int64_t start_;
  };
  Span span(const char* name, const char* category = "train", int lane = 0) {
    return Span(enabled_ ? this : nullptr, name, category, lane);
  }

  // This process's events as a JSON array body (comma-separated objects, no brackets),
  // so that several ranks' events can be concatenated.
  std::string events_json() const;
  // Writes {"traceEvents":[...]} of the given bodies atomically to `path`.
  static void write_file(const std::string& path, const std::vector<std::string>& event_bodies);

 private:
  struct Event {
    std::string name;
    const char* category;
    int64_t start_us, dur_us;
    int lane;
  };
  int rank_;
  bool enabled_;
  mutable std::mutex mutex_;
  std::vector<Event> events_;
};

}  // namespace loom::trace
