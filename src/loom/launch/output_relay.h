// OutputRelay: copies one child stream (the read end of a pipe) to a destination
// descriptor line by line, with a prefix, for the launcher's poll loop.
//
// Contract: lines are written whole, with one write loop each, so relays that share a
// destination and are driven from one thread never interleave mid-line. The source is
// switched to non-blocking mode; pump() and drain() never block on it. Writes to the
// destination block like any write; if the destination is gone (EPIPE, e.g. `| head`),
// output is dropped from then on and the relay keeps consuming its source so the child
// never blocks on a full pipe. The caller must ignore SIGPIPE for that (the launcher does).
// Owns the source descriptor, not the destination. Not thread-safe.
#pragma once

#include <string>

#include "loom/launch/line_prefixer.h"
#include "loom/launch/unique_fd.h"

namespace loom::launch {

class OutputRelay {
 public:
  OutputRelay(UniqueFd source, int destination, std::string prefix);
  OutputRelay(OutputRelay&&) = default;
  OutputRelay& operator=(OutputRelay&&) = default;
  ~OutputRelay();

  // The source descriptor to poll for POLLIN, or -1 once closed.
  int fd() const { return source_.get(); }
  bool open() const { return source_.valid(); }

  // Reads once (what is available, up to 64 KiB) and writes the completed lines.
  // At end of stream (or a read error) it flushes the partial line and closes.
  // Returns open().
  bool pump();
  // Pumps until the source has nothing more to give right now, or is closed (at most
  // 16 MiB per call, in case an orphan in the worker's group keeps writing).
  void drain();
  // Flushes the partial line (newline-terminated) and closes the source. Idempotent.
  void close();

 private:
  void write_out(const std::string& data);

  UniqueFd source_;
  int destination_;
  LinePrefixer prefixer_;
  bool destination_broken_ = false;
};

// Writes all of `data` to `fd`, retrying on EINTR and short writes; waits (bounded, 10 s)
// for a non-blocking destination to become writable. Returns false if the data could not
// be written (errno is left set).
bool write_all(int fd, const std::string& data);

}  // namespace loom::launch
