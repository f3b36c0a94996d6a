#include "loom/pipeline/schedule.h"

#include <fmt/format.h>

#include <algorithm>

#include "loom/core/choice.h"
#include "loom/core/error.h"

namespace loom::pipeline {

namespace {
constexpr Choice<ScheduleKind> kSchedules[] = {{"gpipe", ScheduleKind::gpipe}, {"1f1b", ScheduleKind::one_f_one_b}};
}  // namespace

ScheduleKind parse_schedule(const std::string& name) { return parse_choice("schedule", name, kSchedules); }

std::string schedule_name(ScheduleKind kind) { return choice_name(kind, kSchedules); }

std::vector<Action> stage_actions(ScheduleKind kind, int stages, int stage, int micro_batches) {
  LOOM_CHECK(stages >= 1 && stage >= 0 && stage < stages, ConfigError, "stage {} of {} stages", stage, stages);
  LOOM_CHECK(micro_batches >= 1, ConfigError, "--micro-batches must be at least 1, got {}", micro_batches);
  std::vector<Action> actions;
  actions.reserve(2 * static_cast<size_t>(micro_batches));
  if (kind == ScheduleKind::gpipe) {
    for (int m = 0; m < micro_batches; ++m) actions.push_back({Action::forward, m});
    for (int m = 0; m < micro_batches; ++m) actions.push_back({Action::backward, m});
    return actions;
  }
  const int warmup = std::min(stages - 1 - stage, micro_batches);
  int next_forward = 0, next_backward = 0;
  for (; next_forward < warmup; ++next_forward) actions.push_back({Action::forward, next_forward});
  while (next_forward < micro_batches) {
    actions.push_back({Action::forward, next_forward++});
    actions.push_back({Action::backward, next_backward++});
  }
  while (next_backward < micro_batches) actions.push_back({Action::backward, next_backward++});
  return actions;
}

int max_in_flight(const std::vector<Action>& actions) {
  int held = 0, peak = 0;
  for (const Action& a : actions) {
    held += a.kind == Action::forward ? 1 : -1;
    peak = std::max(peak, held);
  }
  return peak;
}

std::string describe(const std::vector<Action>& actions) {
  std::string out;
  for (const Action& a : actions) {
    if (!out.empty()) out += ' ';
    out += fmt::format("{}{}", a.kind == Action::forward ? 'F' : 'B', a.micro);
  }
  return out;
}

SimulatedRun simulate(ScheduleKind kind, int stages, int micro_batches, double forward_cost, double backward_cost) {
  LOOM_CHECK(stages >= 1, ConfigError, "a pipeline needs at least one stage, got {}", stages);
  StageCosts costs;
  costs.forward.assign(stages, forward_cost);
  costs.backward.assign(stages, backward_cost);
  return simulate(kind, micro_batches, costs);
}

SimulatedRun simulate(ScheduleKind kind, int micro_batches, const StageCosts& costs) {
  const int stages = static_cast<int>(costs.forward.size());
  LOOM_CHECK(stages >= 1 && costs.backward.size() == costs.forward.size(), ConfigError,
             "simulate: {} forward and {} backward costs (one each per stage, at least one stage)",
             costs.forward.size(), costs.backward.size());
  for (int s = 0; s < stages; ++s) {
    LOOM_CHECK(costs.forward[s] >= 0 && costs.backward[s] >= 0, ConfigError, "simulate: stage {} has a negative cost",
               s);
  }
  LOOM_CHECK(costs.message >= 0, ConfigError, "simulate: a negative message time ({})", costs.message);
  std::vector<std::vector<Action>> plan(stages);
  for (int s = 0; s < stages; ++s) plan[s] = stage_actions(kind, stages, s, micro_batches);
  // When each stage finished each micro-batch's forward / backward (-1: not yet).
  std::vector<std::vector<double>> fwd_done(stages, std::vector<double>(micro_batches, -1));
  std::vector<std::vector<double>> bwd_done(stages, std::vector<double>(micro_batches, -1));
  std::vector<size_t> next(stages, 0);
  std::vector<double> clock(stages, 0);
  SimulatedRun run;
  run.start.assign(stages, {});
  size_t remaining = 0;
  for (const auto& p : plan) remaining += p.size();
  while (remaining > 0) {
    bool progressed = false;
    for (int s = 0; s < stages; ++s) {
      while (next[s] < plan[s].size()) {
        const Action a = plan[s][next[s]];
        double ready = clock[s];
        if (a.kind == Action::forward && s > 0) {
          if (fwd_done[s - 1][a.micro] < 0) break;
          ready = std::max(ready, fwd_done[s - 1][a.micro] + costs.message);
        }
        if (a.kind == Action::backward) {
          LOOM_CHECK(fwd_done[s][a.micro] >= 0, ConfigError, "stage {}: backward {} before its forward", s, a.micro);
          if (s + 1 < stages) {
            if (bwd_done[s + 1][a.micro] < 0) break;
            ready = std::max(ready, bwd_done[s + 1][a.micro] + costs.message);
          }
        }
        run.start[s].push_back(ready);
        clock[s] = ready + (a.kind == Action::forward ? costs.forward[s] : costs.backward[s]);
        (a.kind == Action::forward ? fwd_done : bwd_done)[s][a.micro] = clock[s];
        ++next[s];
        --remaining;
        progressed = true;
      }
    }
    LOOM_CHECK(progressed, ConfigError, "schedule {} deadlocks with {} stages and {} micro-batches",
               schedule_name(kind), stages, micro_batches);
  }
  for (double c : clock) run.makespan = std::max(run.makespan, c);
  for (int s = 0; s < stages; ++s) {
    const double busy = micro_batches * (costs.forward[s] + costs.backward[s]);
    run.idle_share.push_back(run.makespan > 0 ? 1.0 - busy / run.makespan : 0.0);
  }
  return run;
}

std::vector<int64_t> micro_batch_sizes(int64_t rows, int micro_batches) {
  LOOM_CHECK(micro_batches >= 1, ConfigError, "--micro-batches must be at least 1, got {}", micro_batches);
  LOOM_CHECK(rows >= 1, ConfigError, "a pipeline step needs at least one sample");
  const int64_t parts = std::min<int64_t>(micro_batches, rows);
  std::vector<int64_t> sizes(parts, rows / parts);
  for (int64_t i = 0; i < rows % parts; ++i) ++sizes[i];
  return sizes;
}

double theoretical_bubble(int stages, int micro_batches) {
  return static_cast<double>(stages - 1) / (micro_batches + stages - 1);
}

}  // namespace loom::pipeline
