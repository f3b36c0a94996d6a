#include "loom/launch/free_port.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loom/launch/self_executable.h"

namespace loom::launch {
namespace {

TEST(PickFreePort, ReturnsAPortThatCanBeBound) {
  const int port = pick_free_port();
  ASSERT_GT(port, 0);
  ASSERT_LE(port, 65535);
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_ANY);
  address.sin_port = htons(static_cast<uint16_t>(port));
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  close(fd);
}

TEST(PickFreePort, DoesNotReturnAPortInUse) {
  // Hold a listening socket on the picked port; the next pick must differ.
  const int first = pick_free_port();
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_ANY);
  address.sin_port = htons(static_cast<uint16_t>(first));
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ASSERT_EQ(listen(fd, 1), 0);
  for (int i = 0; i < 20; ++i) EXPECT_NE(pick_free_port(), first);
  close(fd);
}

TEST(SelfExecutable, IsTheAbsolutePathOfThisTestBinary) {
  const std::string path = self_executable();
  ASSERT_FALSE(path.empty());
  EXPECT_EQ(path.front(), '/');
  EXPECT_NE(path.find("loom_unit_launch"), std::string::npos) << path;
  EXPECT_EQ(access(path.c_str(), X_OK), 0);
}

}  // namespace
}  // namespace loom::launch
