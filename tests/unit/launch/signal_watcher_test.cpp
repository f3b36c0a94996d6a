#include "loom/launch/signal_watcher.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>

#include "loom/core/error.h"

namespace loom::launch {
namespace {

void handler_for_test(int) {}

TEST(SignalWatcher, MakesSignalsReadableOnItsDescriptor) {
  SignalWatcher watcher({SIGUSR1, SIGUSR2});
  EXPECT_TRUE(watcher.take().empty());
  raise(SIGUSR2);
  raise(SIGUSR1);
  pollfd pfd{watcher.fd(), POLLIN, 0};
  ASSERT_EQ(poll(&pfd, 1, 1000), 1);
  EXPECT_EQ(watcher.take(), (std::vector<int>{SIGUSR2, SIGUSR1}));
  EXPECT_TRUE(watcher.take().empty());
}

TEST(SignalWatcher, RestoresThePreviousDispositions) {
  struct sigaction mine {
  }, previous{}, now{};
  mine.sa_handler = handler_for_test;
  sigaction(SIGUSR1, &mine, &previous);
  {
    SignalWatcher watcher({SIGUSR1}, {SIGUSR2});
    sigaction(SIGUSR2, nullptr, &now);
    EXPECT_EQ(now.sa_handler, SIG_IGN);
    EXPECT_EQ(watcher.signals_to_reset_in_children(), std::vector<int>{SIGUSR2});
  }
  sigaction(SIGUSR1, nullptr, &now);
  EXPECT_EQ(now.sa_handler, handler_for_test);
  sigaction(SIGUSR2, nullptr, &now);
  EXPECT_EQ(now.sa_handler, SIG_DFL);
  sigaction(SIGUSR1, &previous, nullptr);
}

TEST(SignalWatcher, AlreadyIgnoredSignalsStayIgnoredInChildren) {
  struct sigaction ignore {
  }, previous{};
  ignore.sa_handler = SIG_IGN;
  sigaction(SIGUSR2, &ignore, &previous);
  {
    SignalWatcher watcher({}, {SIGUSR2});
    EXPECT_TRUE(watcher.signals_to_reset_in_children().empty());
  }
  sigaction(SIGUSR2, &previous, nullptr);
}

TEST(SignalWatcher, LeavesAlreadyIgnoredSignalsIgnored) {
  struct sigaction ignore {
  }, previous{}, now{};
  ignore.sa_handler = SIG_IGN;
  sigaction(SIGUSR1, &ignore, &previous);  // like SIGHUP under nohup
  {
    SignalWatcher watcher({SIGUSR1});
    sigaction(SIGUSR1, nullptr, &now);
    EXPECT_EQ(now.sa_handler, SIG_IGN);
    raise(SIGUSR1);
    EXPECT_TRUE(watcher.take().empty());
  }
  sigaction(SIGUSR1, &previous, nullptr);
}

TEST(SignalWatcher, OnlyOneAtATime) {
  SignalWatcher first({SIGUSR1});
  EXPECT_THROW(SignalWatcher({SIGUSR2}), LaunchError);
}

}  // namespace
}  // namespace loom::launch
