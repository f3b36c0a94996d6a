#include "loom/pipeline/schedule.h"

#include <gtest/gtest.h>

#include <numeric>

#include "loom/core/error.h"

namespace loom::pipeline {
namespace {

TEST(Schedule, ParsesNamesAndRejectsOthers) {
  EXPECT_EQ(parse_schedule("gpipe"), ScheduleKind::gpipe);
  EXPECT_EQ(parse_schedule("1f1b"), ScheduleKind::one_f_one_b);
  try {
    parse_schedule("interleaved");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("--schedule: unknown value 'interleaved' (expected one of: gpipe, 1f1b)"),
              std::string::npos)
        << e.what();
  }
}

TEST(Schedule, GpipeRunsAllForwardsThenAllBackwards) {
  EXPECT_EQ(describe(stage_actions(ScheduleKind::gpipe, 3, 1, 4)), "F0 F1 F2 F3 B0 B1 B2 B3");
}

TEST(Schedule, OneFOneBWarmsUpThenAlternatesThenDrains) {
  EXPECT_EQ(describe(stage_actions(ScheduleKind::one_f_one_b, 4, 0, 6)), "F0 F1 F2 F3 B0 F4 B1 F5 B2 B3 B4 B5");
  EXPECT_EQ(describe(stage_actions(ScheduleKind::one_f_one_b, 4, 2, 6)), "F0 F1 B0 F2 B1 F3 B2 F4 B3 F5 B4 B5");
  EXPECT_EQ(describe(stage_actions(ScheduleKind::one_f_one_b, 4, 3, 3)), "F0 B0 F1 B1 F2 B2");
  // Fewer micro-batches than the warm-up: GPipe-like.
  EXPECT_EQ(describe(stage_actions(ScheduleKind::one_f_one_b, 4, 0, 2)), "F0 F1 B0 B1");
}

TEST(Schedule, EveryMicroBatchRunsForwardThenBackwardOnce) {
  for (auto kind : {ScheduleKind::gpipe, ScheduleKind::one_f_one_b}) {
    for (int P = 1; P <= 6; ++P) {
      for (int s = 0; s < P; ++s) {
        for (int M = 1; M <= 10; ++M) {
          const auto actions = stage_actions(kind, P, s, M);
          ASSERT_EQ(actions.size(), 2u * M);
          std::vector<int> state(M, 0);
          int next_b = 0;
          for (const auto& a : actions) {
            if (a.kind == Action::forward) {
              EXPECT_EQ(state[a.micro]++, 0);
            } else {
              EXPECT_EQ(state[a.micro]++, 1);
              EXPECT_EQ(a.micro, next_b++);  // backwards in ascending order
            }
          }
        }
      }
    }
  }
}

TEST(Schedule, OneFOneBHoldsAtMostTheStagesAheadGpipeHoldsAll) {
  for (int P = 1; P <= 6; ++P) {
    for (int s = 0; s < P; ++s) {
      for (int M = 1; M <= 12; ++M) {
        EXPECT_EQ(max_in_flight(stage_actions(ScheduleKind::gpipe, P, s, M)), M);
        EXPECT_EQ(max_in_flight(stage_actions(ScheduleKind::one_f_one_b, P, s, M)), std::min(P - s, M));
      }
    }
  }
}

TEST(Schedule, NoDeadlockForAnyStagesAndMicroBatches) {
  for (auto kind : {ScheduleKind::gpipe, ScheduleKind::one_f_one_b}) {
    for (int P = 1; P <= 8; ++P) {
      for (int M = 1; M <= 16; ++M) EXPECT_NO_THROW(simulate(kind, P, M)) << schedule_name(kind) << P << " " << M;
    }
  }
}

TEST(Schedule, SimulatedBubbleMatchesTheory) {
  // Balanced stages, instant messages: both schedules take (M + P - 1)(f + b), so every
  // stage idles (P-1)/(M+P-1) of the step.
  for (auto kind : {ScheduleKind::gpipe, ScheduleKind::one_f_one_b}) {
    for (int P : {2, 3, 4}) {
      for (int M : {1, 2, 4, 8}) {
        const auto run = simulate(kind, P, M);
        EXPECT_DOUBLE_EQ(run.makespan, (M + P - 1) * 3.0);
        for (double idle : run.idle_share) EXPECT_NEAR(idle, theoretical_bubble(P, M), 1e-12);
      }
    }
  }
}

// The planner's model: measured per-stage costs and a message time.
TEST(Schedule, SimulatesMeasuredCostsAndMessages) {
  StageCosts c;
  c.forward = {1, 3};
  c.backward = {2, 4};
  c.message = 0.5;
  for (auto kind : {ScheduleKind::gpipe, ScheduleKind::one_f_one_b}) {
    // One micro-batch: F on 0, message, F on 1, B on 1, message, B on 0.
    const auto one = simulate(kind, 1, c);
    EXPECT_DOUBLE_EQ(one.makespan, 1 + 0.5 + 3 + 4 + 0.5 + 2) << schedule_name(kind);
    EXPECT_DOUBLE_EQ(one.idle_share[0], 1 - 3.0 / 11) << schedule_name(kind);
    EXPECT_DOUBLE_EQ(one.idle_share[1], 1 - 7.0 / 11) << schedule_name(kind);
  }
  // Eight micro-batches, the second stage twice as slow, instant messages: it sets the
  // pace (8 x 6 after the first forward of stage 0), then stage 0's last backward.
  c.forward = {1, 2};
  c.backward = {2, 4};
  c.message = 0;
  for (auto kind : {ScheduleKind::gpipe, ScheduleKind::one_f_one_b}) {
    EXPECT_DOUBLE_EQ(simulate(kind, 8, c).makespan, 1 + 8 * 6 + 2) << schedule_name(kind);
  }
  // Projection beyond this machine: 8 and 16 balanced stages keep the theory's bubble.
  for (int P : {8, 16}) {
    const auto run = simulate(ScheduleKind::one_f_one_b, P, 32);
    for (double idle : run.idle_share) EXPECT_NEAR(idle, theoretical_bubble(P, 32), 1e-12);
  }
  StageCosts bad;
  bad.forward = {1};
  bad.backward = {1, 2};
  EXPECT_THROW(simulate(ScheduleKind::gpipe, 2, bad), ConfigError);
  bad.backward = {-1};
  EXPECT_THROW(simulate(ScheduleKind::gpipe, 2, bad), ConfigError);
}

TEST(Schedule, RejectsBadStageAndMicroBatchCounts) {
  EXPECT_THROW(stage_actions(ScheduleKind::gpipe, 2, 2, 1), ConfigError);
  EXPECT_THROW(stage_actions(ScheduleKind::gpipe, 2, 0, 0), ConfigError);
  EXPECT_THROW(simulate(ScheduleKind::one_f_one_b, 0, 4), ConfigError);
}

TEST(Schedule, MicroBatchSizesAreEqualLargerFirstAndNeverEmpty) {
  EXPECT_EQ(micro_batch_sizes(10, 4), (std::vector<int64_t>{3, 3, 2, 2}));
  EXPECT_EQ(micro_batch_sizes(8, 4), (std::vector<int64_t>{2, 2, 2, 2}));
  EXPECT_EQ(micro_batch_sizes(3, 8), (std::vector<int64_t>{1, 1, 1}));
  for (int64_t rows = 1; rows < 40; ++rows) {
    for (int m = 1; m < 10; ++m) {
      const auto s = micro_batch_sizes(rows, m);
      EXPECT_EQ(std::accumulate(s.begin(), s.end(), int64_t{0}), rows);
      EXPECT_GE(*std::min_element(s.begin(), s.end()), 1);
      EXPECT_LE(s.front() - s.back(), 1);
    }
  }
  EXPECT_THROW(micro_batch_sizes(4, 0), ConfigError);
}

}  // namespace
}  // namespace loom::pipeline
