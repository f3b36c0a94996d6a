// Schedule: the order in which one pipeline stage runs the forward and backward passes
// of its micro-batches within one global step.
//
//   gpipe  all M forwards, then all M backwards (GPipe). Every stage holds all M
//          micro-batches' activations at the turn.
//   1f1b   PipeDream-Flush: stage s of P runs min(P-1-s, M) warm-up forwards, then
//          alternates one forward and one backward, then drains the backwards. Stage s
//          holds at most min(P-s, M) micro-batches' activations.
//
// Both run every backward in ascending micro-batch order on every stage, so the
// gradient a stage waits for next is always the one its successor sends next. Both have
// the same bubble, (P-1)/(M+P-1) of a step per stage when forward and backward times are
// the same on every stage; 1F1B bounds memory by P instead of M.
//
// Pure functions, no torch: the executor (pipeline_stage.h) runs these lists.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace loom::pipeline {

enum class ScheduleKind { gpipe, one_f_one_b };

// "gpipe" | "1f1b"; anything else is a ConfigError naming --schedule.
ScheduleKind parse_schedule(const std::string& name);
std::string schedule_name(ScheduleKind kind);

struct Action {
  enum Kind { forward, backward };
  Kind kind;
  int micro;  // 0-based micro-batch
  bool operator==(const Action& o) const { return kind == o.kind && micro == o.micro; }
};

// The actions of stage `stage` (0-based) of `stages`, for `micro_batches` >= 1.
std::vector<Action> stage_actions(ScheduleKind kind, int stages, int stage, int micro_batches);

// The largest number of micro-batches held between their forward and their backward.
int max_in_flight(const std::vector<Action>& actions);

// "F0 F1 B0 F2 B1 B2": for logs and tests.
std::string describe(const std::vector<Action>& actions);

// Runs the schedule of every stage on an idealised machine: a forward takes
// `forward_cost` time units, a backward `backward_cost`, messages are instant, a stage
// waits for the activation (forward) or gradient (backward) it needs. Throws ConfigError
// if the stages deadlock. Returns, per stage, each action's start time, in the order
// of stage_actions().
struct SimulatedRun {
  std::vector<std::vector<double>> start;  // [stage][action index]
  double makespan = 0;                     // end of the last action on any stage
  // Per stage: the share of the makespan spent neither in forward nor in backward.
  std::vector<double> idle_share;
};
SimulatedRun simulate(ScheduleKind kind, int stages, int micro_batches, double forward_cost = 1.0,
                      double backward_cost = 2.0);

// The same with measured costs (the planner's pipeline model, issue 18): stage s's
// forward of one micro-batch takes forward[s], its backward backward[s] (one entry per
// stage, each >= 0; ConfigError otherwise), and every activation or gradient sent from
// one stage to the next arrives `message` after the sender finished. idle_share is then
// each stage's own: 1 - (its forward + backward time) / makespan.
struct StageCosts {
  std::vector<double> forward;
  std::vector<double> backward;
  double message = 0;
};
SimulatedRun simulate(ScheduleKind kind, int micro_batches, const StageCosts& costs);

// How a batch of `rows` samples is cut into micro-batches: min(micro_batches, rows)
// parts (no empty micro-batch), as equal as possible, the larger ones first.
std::vector<int64_t> micro_batch_sizes(int64_t rows, int micro_batches);

// The bubble of GPipe and 1F1B with balanced stages: (P-1)/(M+P-1).
double theoretical_bubble(int stages, int micro_batches);

}  // namespace loom::pipeline
