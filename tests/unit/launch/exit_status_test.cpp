#include "loom/launch/exit_status.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

namespace loom::launch {
namespace {

int wait_status_of_child(void (*body)()) {
  const pid_t pid = fork();
  if (pid == 0) {
    body();
    _exit(99);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

TEST(ExitStatus, FromANormalExit) {
  const ExitStatus s = ExitStatus::from_wait_status(wait_status_of_child([] { _exit(3); }));
  EXPECT_EQ(s, ExitStatus::exited(3));
  EXPECT_FALSE(s.success());
  EXPECT_EQ(s.exit_code(), 3);
  EXPECT_EQ(s.describe(), "exited with code 3");
}

TEST(ExitStatus, FromASignal) {
  const ExitStatus s = ExitStatus::from_wait_status(wait_status_of_child([] { raise(SIGKILL); }));
  EXPECT_EQ(s, ExitStatus::killed(SIGKILL));
  EXPECT_FALSE(s.success());
  EXPECT_EQ(s.exit_code(), 128 + 9);
  EXPECT_EQ(s.describe(), "was killed by signal 9 (SIGKILL)");
}

TEST(ExitStatus, SuccessIsExitZeroOnly) {
  EXPECT_TRUE(ExitStatus::exited(0).success());
  EXPECT_EQ(ExitStatus::exited(0).exit_code(), 0);
  EXPECT_FALSE(ExitStatus::killed(SIGTERM).success());
  EXPECT_EQ(ExitStatus::killed(SIGTERM).describe(), "was killed by signal 15 (SIGTERM)");
}

TEST(SignalName, NamesCommonSignalsAndNumbersOthers) {
  EXPECT_EQ(signal_name(SIGINT), "SIGINT");
  EXPECT_EQ(signal_name(SIGSEGV), "SIGSEGV");
  EXPECT_EQ(signal_name(SIGABRT), "SIGABRT");
  EXPECT_EQ(signal_name(200), "SIG200");
}

}  // namespace
}  // namespace loom::launch
