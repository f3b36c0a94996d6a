// Liveness on a clock the test advances: when a silent worker is dropped, when it counts
// again, and when the server is finished.
#include "loom/ps/liveness.h"

#include <gtest/gtest.h>

#include "unit/ps/ps_testing.h"

namespace loom::ps {
namespace {

using namespace loom::ps::testing;

const auto kNobodyWaits = [](size_t) { return false; };

TEST(PsLiveness, ASilentWorkerIsDroppedAfterDeadAfterUnlessARequestOfItsWaits) {
  ManualClock clock;
  Liveness workers(3, 30s, 100s, clock.clock());
  clock.advance(30s - 1ms);
  workers.heard_from(0);
  EXPECT_TRUE(workers.drop_silent(kNobodyWaits).empty()) << "silent for less than dead_after";
  clock.advance(1ms);
  EXPECT_EQ(workers.drop_silent([](size_t w) { return w == 2; }), std::vector<size_t>({1}))
      << "worker 0 spoke, worker 2 waits for the server";
  EXPECT_TRUE(workers.counted(0));
  EXPECT_FALSE(workers.counted(1));
  EXPECT_TRUE(workers.counted(2));
  EXPECT_TRUE(workers.drop_silent(kNobodyWaits) == std::vector<size_t>({2})) << "no longer waiting";
  EXPECT_TRUE(workers.heard_from(1)) << "it is back";
  EXPECT_FALSE(workers.heard_from(1));
  EXPECT_TRUE(workers.counted(1));
  workers.done(0);
  EXPECT_FALSE(workers.counted(0));
  clock.advance(1000s);
  EXPECT_EQ(workers.drop_silent(kNobodyWaits), std::vector<size_t>({1})) << "a done worker is not dropped";
}

TEST(PsLiveness, FinishedWhenEveryWorkerIsDoneOrDroppedAndSilentForGoneAfter) {
  ManualClock clock;
  Liveness workers(2, 30s, 100s, clock.clock());
  EXPECT_FALSE(workers.finished());
  workers.done(0);
  clock.advance(200s);
  EXPECT_FALSE(workers.finished()) << "worker 1 is silent but was never dropped";
  workers.drop_silent(kNobodyWaits);
  EXPECT_TRUE(workers.finished());
  workers.heard_from(1);
  EXPECT_FALSE(workers.finished()) << "it spoke again";
  clock.advance(99s);
  workers.drop_silent(kNobodyWaits);
  EXPECT_FALSE(workers.finished()) << "dropped, but silent for less than gone_after";
  clock.advance(1s);
  EXPECT_TRUE(workers.finished());
  workers.done(1);
  EXPECT_TRUE(workers.finished());
}

}  // namespace
}  // namespace loom::ps
