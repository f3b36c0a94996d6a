#include "loom/launch/self_executable.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "loom/core/error.h"

namespace loom::launch {

std::string self_executable() {
  std::vector<char> buffer(4096);
  for (;;) {
    const ssize_t n = ::readlink("/proc/self/exe", buffer.data(), buffer.size());
    LOOM_CHECK(n >= 0, LaunchError, "cannot find the running executable: /proc/self/exe: {}", std::strerror(errno));
    if (static_cast<std::size_t>(n) < buffer.size()) return std::string(buffer.data(), n);
    buffer.resize(buffer.size() * 2);  // truncated: try again with more room
  }
}

}  // namespace loom::launch
