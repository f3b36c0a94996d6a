#include "loom/launch/output_relay.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>

namespace loom::launch {

namespace {
constexpr std::size_t kReadChunk = 64 * 1024;
constexpr int kWritableWaitMs = 10'000;
constexpr int kMaxDrainReads = 256;  // 16 MiB
}  // namespace

bool write_all(int fd, const std::string& data) {
  const char* p = data.data();
  std::size_t left = data.size();
  while (left > 0) {
    const ssize_t n = ::write(fd, p, left);
    if (n > 0) {
      p += n;
      left -= static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      // Someone made the destination non-blocking; wait for room, but not forever.
      pollfd pfd{fd, POLLOUT, 0};
      const int ready = ::poll(&pfd, 1, kWritableWaitMs);
      if (ready > 0 || (ready < 0 && errno == EINTR)) continue;
      if (ready == 0) errno = EAGAIN;
      return false;
    }
    return false;
  }
  return true;
}

OutputRelay::OutputRelay(UniqueFd source, int destination, std::string prefix)
    : source_(std::move(source)), destination_(destination), prefixer_(std::move(prefix)) {
  if (source_) {
    const int flags = ::fcntl(source_.get(), F_GETFL);
    if (flags >= 0) ::fcntl(source_.get(), F_SETFL, flags | O_NONBLOCK);
  }
}

OutputRelay::~OutputRelay() { close(); }

void OutputRelay::write_out(const std::string& data) {
  if (data.empty() || destination_broken_) return;
  if (!write_all(destination_, data) && errno == EPIPE) destination_broken_ = true;
}

bool OutputRelay::pump() {
  if (!source_) return false;
  char buffer[kReadChunk];
  ssize_t n;
  do {
    n = ::read(source_.get(), buffer, sizeof buffer);
  } while (n < 0 && errno == EINTR);
  if (n > 0) {
    write_out(prefixer_.feed(std::string_view(buffer, static_cast<std::size_t>(n))));
    return true;
  }
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
  close();  // end of stream, or a read error: nothing more will come
  return false;
}

void OutputRelay::drain() {
  // Bounded, in case something else still holds the pipe and keeps writing.
  for (int reads = 0; source_ && reads < kMaxDrainReads; ++reads) {
    pollfd pfd{source_.get(), POLLIN, 0};
    const int ready = ::poll(&pfd, 1, 0);
    if (ready == 0 || (ready < 0 && errno != EINTR)) return;
    pump();
  }
}

void OutputRelay::close() {
  if (!source_) return;
  write_out(prefixer_.flush());
  source_.reset();
}

}  // namespace loom::launch
