// LinePrefixer: turns a byte stream into whole lines that each start with a fixed prefix
// (the launcher uses "[<rank>]: "). Bytes are buffered until their line is complete, so
// a caller that writes each returned chunk with one write loop never splits a line.
//
// Contract: every returned line ends in '\n'. A line longer than max_line bytes is
// emitted in pieces of max_line bytes (each prefixed and newline-terminated) so memory
// stays bounded whatever a worker prints. Not thread-safe; one prefixer per stream.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace loom::launch {

class LinePrefixer {
 public:
  static constexpr std::size_t kDefaultMaxLine = 1 << 20;

  explicit LinePrefixer(std::string prefix, std::size_t max_line = kDefaultMaxLine);

  // Consumes `bytes`; returns the lines they complete, prefixed ("" if none).
  std::string feed(std::string_view bytes);
  // Returns the buffered partial line, prefixed and newline-terminated ("" if none), and
  // empties the buffer. Call once the stream has ended.
  std::string flush();
  bool has_partial() const { return !partial_.empty(); }
  const std::string& prefix() const { return prefix_; }

 private:
  void append_line(std::string& out, std::string_view line) const;

  std::string prefix_;
  std::size_t max_line_;
  std::string partial_;
};

}  // namespace loom::launch
