// The P = 2 pipeline simulations of bench/pipeline_simulation.cpp beyond loom's own
// pipeline::simulate (fixed action times): a processor-sharing one with one slowdown
// (--overlap-slowdown), and the contention-aware one whose parameters come from the
// traces of bench/pipeline_bubble.py (alone and shared action times, the stage loop's
// gaps, the wire), with and without jitter. Header-only: one program uses it.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <utility>
#include <vector>

#include "loom/pipeline/schedule.h"

namespace pipeline_sim {

using loom::pipeline::ScheduleKind;
using loom::pipeline::StageCosts;

// The contention-aware simulation's parameters for P = 2, measured from a row's traces
// (bench/pipeline_bubble.py --json, "contention"). [stage][0 forward, 1 backward].
struct Contention {
  bool valid = false;
  double alone[2][2] = {};            // action time while the other stage does not compute
  double shared[2][2] = {};           // action time while the other stage computes all of it
  double gap_pre[2] = {};             // stage loop time after an action, before waiting for a message
  double gap_post[2] = {};            // after the message is there, before the next action starts
  double wire = 0;                    // sender's action end -> message at the receiver
  std::vector<double> samples[2][2];  // each traced span's work in alone-seconds (optional)
};

// A second, processor-sharing simulation for --overlap-slowdown X (P = 2 table only):
// the same action lists and dependencies, but an action's cost is its work alone, and it
// progresses X times slower while more than one stage computes (two stages sharing the
// machine's cores), at full speed while it is the only one. Returns per stage the
// [start, end) of each action; window_idle_intervals then reads the bench's idle share.
using Intervals = std::vector<std::vector<std::pair<double, double>>>;
inline Intervals simulate_shared(ScheduleKind kind, int micro, const StageCosts& costs, double slowdown) {
  using loom::pipeline::Action;
  const int stages = static_cast<int>(costs.forward.size());
  std::vector<std::vector<Action>> plan(stages);
  for (int s = 0; s < stages; ++s) plan[s] = loom::pipeline::stage_actions(kind, stages, s, micro);
  std::vector<std::vector<double>> fwd_done(stages, std::vector<double>(micro, -1)), bwd_done = fwd_done;
  std::vector<size_t> next(stages, 0);
  std::vector<double> left(stages, -1);  // work left of the running action (-1: none running)
  Intervals out(stages);
  double now = 0;
  for (;;) {
    // Start every action whose input has arrived; note the earliest future arrival.
    double arrival = std::numeric_limits<double>::infinity();
    bool pending = false;
    for (int s = 0; s < stages; ++s) {
      if (left[s] >= 0 || next[s] >= plan[s].size()) continue;
      pending = true;
      const Action a = plan[s][next[s]];
      double dep = 0;
      if (a.kind == Action::forward && s > 0) dep = fwd_done[s - 1][a.micro];
      if (a.kind == Action::backward && s + 1 < stages) dep = bwd_done[s + 1][a.micro];
      if (dep < 0) continue;  // not sent yet
      const double ready = (a.kind == Action::forward ? s > 0 : s + 1 < stages) ? dep + costs.message : 0.0;
      if (ready <= now + 1e-15) {
        left[s] = a.kind == Action::forward ? costs.forward[s] : costs.backward[s];
        out[s].push_back({now, now});
      } else {
        arrival = std::min(arrival, ready);
      }
    }
    int busy = 0;
    for (int s = 0; s < stages; ++s) busy += left[s] >= 0;
    if (busy == 0 && !pending) break;
    LOOM_CHECK(busy > 0 || std::isfinite(arrival), loom::ConfigError, "simulate_shared: deadlock");
    const double rate = busy > 1 ? 1.0 / slowdown : 1.0;
    double finish = std::numeric_limits<double>::infinity();
    for (int s = 0; s < stages; ++s)
      if (left[s] >= 0) finish = std::min(finish, now + left[s] / rate);
    const double t = std::min(finish, arrival);
    for (int s = 0; s < stages; ++s) {
      if (left[s] < 0) continue;
      left[s] -= (t - now) * rate;
      if (left[s] <= 1e-12) {
        const Action a = plan[s][next[s]];
        (a.kind == Action::forward ? fwd_done : bwd_done)[s][a.micro] = t;
        out[s].back().second = t;
        left[s] = -1;
        ++next[s];
      }
    }
    now = t;
  }
  return out;
}

// The bench's idle share from each stage's action intervals.
inline std::vector<double> window_idle_intervals(const Intervals& iv) {
  const double begin = iv[0].front().first, end = iv[0].back().second;
  std::vector<double> idle;
  for (const auto& stage : iv) {
    double busy = 0;
    for (const auto& [a, b] : stage) busy += std::max(0.0, std::min(b, end) - std::max(a, begin));
    idle.push_back(end > begin ? 1.0 - busy / (end - begin) : 0.0);
  }
  return idle;
}

// The contention-aware simulation: per stage s and direction d, an action is alone[s][d]
// of work; it progresses at rate 1 while at most `cores` stages compute and at rate
// alone / shared (processor sharing) while more do, the rate changing whenever a stage
// starts or stops computing. Between two actions a stage spends gap_pre[s] (after the
// end of its previous action; the stage loop's bookkeeping), then waits for the
// message its next action needs (the sender's end + wire), then gap_post[s] before the
// next action starts: start = max(end + pre, arrival) + post. The stage's first action
// starts at its input's arrival + post (stage 0's first forward at 0). Gaps do not
// compute (they do not slow the other stage). P stages: the vectors are per stage.
struct ContentionModel {
  std::vector<std::array<double, 2>> alone, shared;
  std::vector<double> gap_pre, gap_post;
  double wire = 0;
  int cores = 1;  // more computing stages than this share the cores
  // With `rng`: each action's work is drawn from samples[s][d] (the traced spans' work),
  // not alone[s][d]; its rate while shared is still alone / shared.
  std::vector<std::array<std::vector<double>, 2>> samples;
  std::mt19937* rng = nullptr;
};

inline ContentionModel two_stage_model(const Contention& c, bool sharing, bool gaps) {
  ContentionModel m;
  for (int s = 0; s < 2; ++s) {
    m.alone.push_back({c.alone[s][0], c.alone[s][1]});
    m.shared.push_back(sharing ? std::array<double, 2>{c.shared[s][0], c.shared[s][1]}
                               : std::array<double, 2>{c.alone[s][0], c.alone[s][1]});
    m.gap_pre.push_back(gaps ? c.gap_pre[s] : 0.0);
    m.gap_post.push_back(gaps ? c.gap_post[s] : 0.0);
  }
  m.wire = c.wire;
  m.cores = 1;
  for (int s = 0; s < 2; ++s) m.samples.push_back({c.samples[s][0], c.samples[s][1]});
  return m;
}

inline Intervals simulate_contention(ScheduleKind kind, int micro, const ContentionModel& cm) {
  using loom::pipeline::Action;
  const int stages = static_cast<int>(cm.alone.size());
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<std::vector<Action>> plan(stages);
  for (int s = 0; s < stages; ++s) plan[s] = loom::pipeline::stage_actions(kind, stages, s, micro);
  std::vector<std::vector<double>> fwd_done(stages, std::vector<double>(micro, -1)), bwd_done = fwd_done;
  enum Phase { pre, wait, post, compute, done };
  std::vector<Phase> phase(stages, wait);
  std::vector<double> until(stages, 0.0), left(stages, 0.0);
  std::vector<size_t> next(stages, 0);
  Intervals out(stages);
  auto arrival = [&](int s) {  // when the message next[s] needs is there; inf: not sent yet
    const Action a = plan[s][next[s]];
    if (a.kind == Action::forward)
      return s == 0 ? 0.0 : fwd_done[s - 1][a.micro] < 0 ? inf : fwd_done[s - 1][a.micro] + cm.wire;
    return s + 1 == stages ? 0.0 : bwd_done[s + 1][a.micro] < 0 ? inf : bwd_done[s + 1][a.micro] + cm.wire;
  };
  double now = 0;
  for (int guard = 0;; ++guard) {
    LOOM_CHECK(guard < 100000000, loom::ConfigError, "simulate_contention: no progress");
    // Transitions at `now`, until none applies.
    for (bool changed = true; changed;) {
      changed = false;
      for (int s = 0; s < stages; ++s) {
        if (phase[s] == pre && until[s] <= now + 1e-15) {
          phase[s] = wait;
          changed = true;
        }
        if (phase[s] == wait && arrival(s) <= now + 1e-15) {
          // Stage 0's very first forward has no message and no loop time before it.
          const bool first0 = s == 0 && next[s] == 0;
          phase[s] = post;
          until[s] = first0 ? now : now + cm.gap_post[s];
          changed = true;
        }
        if (phase[s] == post && until[s] <= now + 1e-15) {
          const int d = plan[s][next[s]].kind == Action::forward ? 0 : 1;
          phase[s] = compute;
          left[s] = cm.alone[s][d];
          if (cm.rng && s < static_cast<int>(cm.samples.size()) && !cm.samples[s][d].empty()) {
            const auto& v = cm.samples[s][d];
            left[s] = v[std::uniform_int_distribution<size_t>(0, v.size() - 1)(*cm.rng)];
          }
          out[s].push_back({now, now});
          changed = true;
        }
        if (phase[s] == compute && left[s] <= 1e-12) {
          const Action a = plan[s][next[s]];
          (a.kind == Action::forward ? fwd_done : bwd_done)[s][a.micro] = now;
          out[s].back().second = now;
          ++next[s];
          if (next[s] >= plan[s].size()) {
            phase[s] = done;
          } else {
            phase[s] = pre;
            until[s] = now + cm.gap_pre[s];
          }
          changed = true;
        }
      }
    }
    int computing = 0, finished = 0;
    for (int s = 0; s < stages; ++s) {
      computing += phase[s] == compute;
      finished += phase[s] == done;
    }
    if (finished == stages) break;
    const bool contended = computing > cm.cores;
    auto rate = [&](int s) {
      const int d = plan[s][next[s]].kind == Action::forward ? 0 : 1;
      return contended ? cm.alone[s][d] / cm.shared[s][d] : 1.0;
    };
    double t = inf;
    for (int s = 0; s < stages; ++s) {
      if (phase[s] == pre || phase[s] == post) t = std::min(t, until[s]);
      if (phase[s] == wait) t = std::min(t, arrival(s));
      if (phase[s] == compute) t = std::min(t, now + left[s] / rate(s));
    }
    LOOM_CHECK(std::isfinite(t), loom::ConfigError, "simulate_contention: deadlock");
    for (int s = 0; s < stages; ++s) {
      if (phase[s] == compute) left[s] -= (t - now) * rate(s);
    }
    now = t;
  }
  return out;
}

// The contention-aware simulation with each action's work drawn from the traced spans'
// (bootstrap; `runs` runs, seed 1): per stage the median idle share over the runs, as
// the bench takes the median over steps.
inline std::vector<double> jitter_idle(ScheduleKind kind, int micro, ContentionModel cm, int runs) {
  std::mt19937 rng(1);
  cm.rng = &rng;
  const size_t stages = cm.alone.size();
  std::vector<std::vector<double>> per(stages);
  for (int r = 0; r < runs; ++r) {
    const auto idle = window_idle_intervals(simulate_contention(kind, micro, cm));
    for (size_t s = 0; s < stages; ++s) per[s].push_back(idle[s]);
  }
  std::vector<double> out;
  for (auto& v : per) {
    std::sort(v.begin(), v.end());
    out.push_back(v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]));
  }
  return out;
}

}  // namespace pipeline_sim
