// loom's one error model: exceptions from a small typed hierarchy, raised through
// LOOM_CHECK / LOOM_THROW, which record the file and line.
//
// Contract: what() is the one-line, user-facing cause (no rank, no location: the
// top-level handler adds the rank; location() is for logs). Messages never contain
// newlines. Every error a user can cause names the thing (flag, file, rank, tensor) and
// the reason.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace loom {

class Error : public std::runtime_error {
 public:
  Error(const std::string& message, const char* file = "", int line = 0);
  // A short category shown before the message, e.g. "config error".
  virtual const char* kind() const noexcept { return "error"; }
  // "src/loom/data/idx_reader.cpp:42", or "" when unknown.
  std::string location() const;

 private:
  const char* file_;
  int line_;
};

#define LOOM_DEFINE_ERROR(Name, Base, Kind)                     \
  class Name : public Base {                                    \
   public:                                                      \
    using Base::Base;                                           \
    const char* kind() const noexcept override { return Kind; } \
  }

LOOM_DEFINE_ERROR(ConfigError, Error, "config error");       // bad flag, key, value
LOOM_DEFINE_ERROR(DataError, Error, "data error");           // missing / corrupt data set
LOOM_DEFINE_ERROR(ModelError, Error, "model error");         // unknown model, mismatch
LOOM_DEFINE_ERROR(CommError, Error, "communication error");  // peer gone, collective failed
LOOM_DEFINE_ERROR(TimeoutError, CommError, "timeout");       // a blocking call ran out of time
LOOM_DEFINE_ERROR(CheckpointError, Error, "checkpoint error");
LOOM_DEFINE_ERROR(LaunchError, Error, "launch error");      // spawning / supervising workers
LOOM_DEFINE_ERROR(ProtocolError, Error, "protocol error");  // malformed message on the wire
LOOM_DEFINE_ERROR(TrainingError, Error, "training error");  // e.g. NaN loss

namespace detail {
template <typename... Args>
std::string format_message(fmt::format_string<Args...> f, Args&&... args) {
  return fmt::format(f, std::forward<Args>(args)...);
}
inline std::string format_message(const std::string& s) { return s; }
}  // namespace detail

}  // namespace loom

// LOOM_THROW(ConfigError, "--batch-size must be positive, got {}", n);
// (Inside namespace loom the error type may be unqualified; elsewhere write loom::ConfigError.)
#define LOOM_THROW(ErrorType, ...) throw ErrorType(::loom::detail::format_message(__VA_ARGS__), __FILE__, __LINE__)

// LOOM_CHECK(n > 0, ConfigError, "--batch-size must be positive, got {}", n);
#define LOOM_CHECK(cond, ErrorType, ...)  \
  do {                                    \
    if (!(cond)) {                        \
      LOOM_THROW(ErrorType, __VA_ARGS__); \
    }                                     \
  } while (0)
