#include "loom/launch/free_port.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "loom/core/error.h"
#include "loom/launch/unique_fd.h"

namespace loom::launch {

int pick_free_port() {
  UniqueFd socket_fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  LOOM_CHECK(socket_fd.valid(), LaunchError, "cannot pick a free port: socket: {}", std::strerror(errno));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_ANY);
  address.sin_port = 0;
  LOOM_CHECK(::bind(socket_fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) == 0, LaunchError,
             "cannot pick a free port: bind: {}", std::strerror(errno));
  socklen_t length = sizeof address;
  LOOM_CHECK(::getsockname(socket_fd.get(), reinterpret_cast<sockaddr*>(&address), &length) == 0, LaunchError,
             "cannot pick a free port: getsockname: {}", std::strerror(errno));
  return ntohs(address.sin_port);
}

}  // namespace loom::launch
