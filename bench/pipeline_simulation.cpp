// The pipeline schedules simulated per micro-batch against the measured bubbles, and
// projected to more stages (issue 18).
//
//   build/bench/pipeline_simulation [--depth 25 --width 523 --batch-size 512 --micro 1,2,4,8]
//       [--threads 1 --repeats 7 --profiles 3] [--split 25,25] [--message-us U | --cluster FILE]
//       [--measured FILE] [--overlap-slowdown X,...] [--project 8,16] [--project-depth D]
//
// 1. Profiles deep-mlp (plan::profile_model: per layer, forward and backward seconds, the
//    median of --repeats runs after a warm-up, in this one process with --threads
//    threads) at every micro-batch size used below (the global batch / M), --profiles
//    times, and keeps per layer the smallest median (other load only adds time).
// 2. P = 2, cut by --split (default: two halves, as bench/pipeline_bubble.py cuts it):
//    each stage's forward / backward of one micro-batch is the sum of its layers'
//    profiled times at that micro-batch size; a message (an activation forward, a
//    gradient back) takes --message-us, else Cluster::load(--cluster).p2p_s(bytes, same
//    node), else Cluster::this_machine's assumed loopback link, where bytes are the
//    largest stage boundary's output at that micro-batch size. pipeline::simulate runs
//    loom's own GPipe and 1F1B action lists (pipeline::stage_actions) on these costs.
//    Printed per schedule and M: the theory (P-1)/(M+P-1), each stage's simulated idle
//    share, and with --measured the measured shares and the relative errors.
//    --overlap-slowdown X adds a column from a second, processor-sharing simulation
//    (simulate_shared below): the same actions, but a stage computes X times slower
//    while the other stage also computes, at its profiled (alone) speed otherwise.
// 3. Projection: the same model (or --project-depth) cut into P = 8, 16 (--project)
//    stages by pipeline::balanced_split on the profiled forward + backward times at the
//    micro-batch size of each M, for M = P, 2P, 4P and 8: the simulated idle share
//    (mean and range over the stages) against the theory, and the makespan of one step
//    against the ideal (all the work / P).
//
// The idle share is the bench's (scripts/pipeline_trace.py): the window is stage 0's
// first forward to the end of its last backward, and a stage's idle share is the part of
// that window it spends neither in a forward nor in a backward. pipeline::simulate's own
// idle_share is 1 - busy / makespan from time 0; stage 0 starts at 0 and (every gradient
// ends at stage 0) finishes last, so the two are the same here; this program computes
// the bench's from the simulated start times anyway and says so if they ever differ.
//
// --measured FILE: JSON as `bench/pipeline_bubble.py --json FILE` writes it:
//   {"stages": 2, "rows": [{"schedule": "gpipe", "micro_batches": 4,
//                           "idle_share": [0.23, 0.19]}, ...]}
// A row may also carry the stages' measured costs, "forward_s": [s0, s1], "backward_s":
// [s0, s1] (mean seconds of one micro-batch's forward / backward per stage, read from the
// traces) and "message_s"; the row is then also simulated with those ("sim@trace"), which
// separates what the schedule model gets wrong from what the profiled costs get wrong.
//
// What the simulation models: the exact order of every stage's actions (the lists the
// executor runs), the dependencies between stages (a forward waits for its activation, a
// backward for its gradient), unequal stage costs (e.g. stage 0 computes no input
// gradient, the last stage adds the loss), the micro-batch size's effect on the time per
// sample (profiled at each size, not scaled), and a fixed latency + bytes / bandwidth per
// message, on the critical path, never overlapping its stage's compute.
// What it does not (pipeline::simulate, the "sim" columns and the projection): each
// action takes a fixed time per stage. On this machine (2 vCPUs,
// docs/performance.md) a stage computes up to 2x faster while the other stage waits
// (stage 1's forwards 5-6 ms alone, 10-15 ms while stage 0 also computes) and the
// profile is taken with one process computing alone, so the simulation's stages are
// "alone" fast all the time; nor does it model the time Gloo's I/O thread waits for a
// core, a message that shares a core with compute, the optimizer step and the loss
// read-back after the window (outside the bench's window, so they do not count), jitter,
// or memory (1F1B and GPipe hold different numbers of micro-batches; the cost of a
// layer does not depend on that here). --overlap-slowdown models the first effect with
// one constant X for the P = 2 table; the projection assumes a core per stage (P
// machines, or P cores that do not slow each other down).
#include <torch/torch.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <map>
#include <numeric>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "loom/core/error.h"
#include "loom/core/log.h"
#include "loom/models/registry.h"
#include "loom/pipeline/schedule.h"
#include "loom/pipeline/stage_split.h"
#include "loom/plan/cluster.h"
#include "loom/plan/profile.h"

namespace {

using loom::pipeline::ScheduleKind;
using loom::pipeline::StageCosts;

struct Measured {
  std::vector<double> idle;      // per stage
  std::vector<double> forward;   // per stage, optional (empty)
  std::vector<double> backward;  // per stage, optional
  double message = -1;           // optional (< 0: not given)
};

// (schedule name, M) -> the measured row.
std::map<std::pair<std::string, int>, Measured> load_measured(const std::string& path) {
  std::ifstream in(path);
  LOOM_CHECK(in.good(), loom::ConfigError, "--measured: cannot read {}", path);
  std::stringstream text;
  text << in.rdbuf();
  std::map<std::pair<std::string, int>, Measured> out;
  try {
    const auto j = nlohmann::json::parse(text.str());
    for (const auto& r : j.at("rows")) {
      Measured m;
      m.idle = r.at("idle_share").get<std::vector<double>>();
      m.forward = r.value("forward_s", std::vector<double>{});
      m.backward = r.value("backward_s", std::vector<double>{});
      m.message = r.value("message_s", -1.0);
      out[{r.at("schedule").get<std::string>(), r.at("micro_batches").get<int>()}] = m;
    }
  } catch (const nlohmann::json::exception& e) {
    LOOM_THROW(loom::DataError, "--measured {}: {}", path, e.what());
  }
  return out;
}

// The bench's idle share (scripts/pipeline_trace.py) from a simulated run.
std::vector<double> window_idle(ScheduleKind kind, int micro, const StageCosts& costs,
                                const loom::pipeline::SimulatedRun& run) {
  const int stages = static_cast<int>(costs.forward.size());
  auto cost = [&](int s, const loom::pipeline::Action& a) {
    return a.kind == loom::pipeline::Action::forward ? costs.forward[s] : costs.backward[s];
  };
  const auto a0 = loom::pipeline::stage_actions(kind, stages, 0, micro);
  double begin = run.start[0].front(), end = begin;
  for (size_t k = 0; k < a0.size(); ++k) end = std::max(end, run.start[0][k] + cost(0, a0[k]));
  std::vector<double> idle;
  for (int s = 0; s < stages; ++s) {
    const auto as = loom::pipeline::stage_actions(kind, stages, s, micro);
    double busy = 0;
    for (size_t k = 0; k < as.size(); ++k) {
      const double a = std::max(run.start[s][k], begin), b = std::min(run.start[s][k] + cost(s, as[k]), end);
      busy += std::max(0.0, b - a);
    }
    idle.push_back(end > begin ? 1.0 - busy / (end - begin) : 0.0);
  }
  return idle;
}

// A second, processor-sharing simulation for --overlap-slowdown X (P = 2 table only):
// the same action lists and dependencies, but an action's cost is its work alone, and it
// progresses X times slower while more than one stage computes (two stages sharing the
// machine's cores), at full speed while it is the only one. Returns per stage the
// [start, end) of each action; window_idle_intervals then reads the bench's idle share.
using Intervals = std::vector<std::vector<std::pair<double, double>>>;
Intervals simulate_shared(ScheduleKind kind, int micro, const StageCosts& costs, double slowdown) {
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
std::vector<double> window_idle_intervals(const Intervals& iv) {
  const double begin = iv[0].front().first, end = iv[0].back().second;
  std::vector<double> idle;
  for (const auto& stage : iv) {
    double busy = 0;
    for (const auto& [a, b] : stage) busy += std::max(0.0, std::min(b, end) - std::max(a, begin));
    idle.push_back(end > begin ? 1.0 - busy / (end - begin) : 0.0);
  }
  return idle;
}

struct Model {
  torch::nn::Sequential net;
  loom::plan::ModelProfile profile;
};

// `profiles` profiles, each layer's forward and backward at each batch the smallest of
// their medians: time taken from the process by other load only ever adds, so on a busy
// machine the minimum of a few medians is closer to the layer's own cost than any one.
Model profile(int64_t depth, int64_t width, const std::vector<int64_t>& batches, int threads, int repeats,
              int profiles) {
  loom::models::ModelOptions mo;
  mo.sample_shape = {1, 28, 28};
  mo.num_classes = 10;
  mo.width = width;
  mo.depth = depth;
  Model m{loom::models::make_model("deep-mlp", mo), {}};
  loom::plan::ProfileOptions po;
  // A throw-away run at the largest batch first: the first passes of a fresh process
  // (allocator, page faults) are slower than profile_model's one warm-up run absorbs.
  po.batches = {batches.front()};
  po.repeats = 1;
  po.threads = threads;
  (void)loom::plan::profile_model(m.net, "deep-mlp", mo.sample_shape, po);
  po.batches = batches;
  po.threads = threads;
  po.repeats = repeats;
  m.profile = loom::plan::profile_model(m.net, "deep-mlp", mo.sample_shape, po);
  for (int k = 1; k < profiles; ++k) {
    const auto again = loom::plan::profile_model(m.net, "deep-mlp", mo.sample_shape, po);
    for (size_t i = 0; i < m.profile.layers.size(); ++i) {
      for (size_t b = 0; b < m.profile.layers[i].times.size(); ++b) {
        auto& t = m.profile.layers[i].times[b];
        t.forward_s = std::min(t.forward_s, again.layers[i].times[b].forward_s);
        t.backward_s = std::min(t.backward_s, again.layers[i].times[b].backward_s);
      }
    }
  }
  return m;
}

struct Link {
  double fixed_s = -1;  // --message-us, when >= 0
  loom::plan::Cluster cluster;
  double seconds(int64_t bytes) const { return fixed_s >= 0 ? fixed_s : cluster.p2p_s(bytes, true); }
};

// Stage costs of `split` at micro-batch size `mb`; message: the largest boundary's.
StageCosts stage_costs(const loom::plan::ModelProfile& p, const std::vector<int64_t>& split, int64_t mb,
                       const Link& link) {
  StageCosts c;
  const auto offsets = loom::pipeline::stage_offsets(split);
  int64_t boundary_bytes = 0;
  for (size_t s = 0; s + 1 < offsets.size(); ++s) {
    double f = 0, b = 0;
    for (int64_t i = offsets[s]; i < offsets[s + 1]; ++i) {
      const auto t = p.layer_at(static_cast<size_t>(i), mb);
      f += t.forward_s;
      b += t.backward_s;
    }
    c.forward.push_back(f);
    c.backward.push_back(b);
    if (s + 2 < offsets.size()) {
      boundary_bytes = std::max(boundary_bytes, p.layer_at(static_cast<size_t>(offsets[s + 1] - 1), mb).output_bytes);
    }
  }
  c.message = split.size() > 1 ? link.seconds(boundary_bytes) : 0.0;
  return c;
}

// The micro-batch size a step of `batch` samples in `micro` micro-batches runs at (the
// largest, when they are not all equal: the slowest one paces the pipeline).
int64_t micro_size(int64_t batch, int micro) { return loom::pipeline::micro_batch_sizes(batch, micro).front(); }

std::string fmt_list(const std::vector<double>& v, const char* f) {
  std::string out;
  for (double x : v) {
    if (!out.empty()) out += ' ';
    out += fmt::format(fmt::runtime(f), x);
  }
  return out;
}

double rel(double x, double ref) { return ref != 0 ? (x - ref) / ref : 0.0; }

// "+3.5% -1.2%": relative errors of a and b against ra and rb.
std::string rel_pair(double a, double ra, double b, double rb) {
  return fmt::format("{:+.1f}% {:+.1f}%", 100 * rel(a, ra), 100 * rel(b, rb));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"pipeline schedules: simulated against measured bubbles, projected to more stages"};
  int64_t depth = 25, width = 523, batch = 512, project_depth = 0;
  int threads = 1, repeats = 7, profiles = 3;
  std::vector<int> micro{1, 2, 4, 8}, project{8, 16};
  std::string split_text, cluster_path, measured_path;
  double message_us = -1;
  std::vector<double> overlap_slowdown;
  app.add_option("--depth", depth, "deep-mlp linear layers (2 x depth layers in all)");
  app.add_option("--width", width, "deep-mlp width");
  app.add_option("--batch-size", batch, "global batch of one step");
  app.add_option("--micro", micro, "micro-batch counts M for P = 2")->delimiter(',');
  app.add_option("--threads", threads, "libtorch threads while profiling (the bench's per-stage threads)");
  app.add_option("--repeats", repeats, "timed runs per batch size in the profile (median)");
  app.add_option("--profiles", profiles, "profiles taken; per layer the smallest of their medians");
  app.add_option("--split", split_text, "P = 2 split as layer counts (default: two halves)");
  app.add_option("--message-us", message_us, "one message's time in microseconds (default: the cluster's link)");
  app.add_option("--cluster", cluster_path, "cluster file: p2p_s(bytes, same node) for the message time");
  app.add_option("--measured", measured_path, "measured bubbles (bench/pipeline_bubble.py --json)");
  app.add_option("--overlap-slowdown", overlap_slowdown,
                 "also simulate P = 2 with compute X times slower while both stages compute (sim+X; a list)")
      ->delimiter(',');
  app.add_option("--project", project, "stage counts to project to")->delimiter(',');
  app.add_option("--project-depth", project_depth, "deep-mlp depth for the projection (default: --depth)");
  CLI11_PARSE(app, argc, argv);
  loom::log::set_level(loom::log::Level::warn);
  try {
    if (project_depth == 0) project_depth = depth;
    for (double x : overlap_slowdown) LOOM_CHECK(x > 0, loom::ConfigError, "--overlap-slowdown must be > 0, got {}", x);
    Link link;
    std::string link_note;
    if (message_us >= 0) {
      link.fixed_s = message_us * 1e-6;
      link_note = fmt::format("{} us per message (--message-us)", message_us);
    } else if (!cluster_path.empty()) {
      link.cluster = loom::plan::Cluster::load(cluster_path);
      link_note = fmt::format("{}: intra link {:.0f} us + bytes / {:.2f} GB/s", cluster_path,
                              link.cluster.intra.latency_s * 1e6, link.cluster.intra.bandwidth_Bps / 1e9);
    } else {
      link.cluster = loom::plan::Cluster::this_machine(2);
      link_note = fmt::format("this machine, not measured: assumed {:.0f} us + bytes / {:.2f} GB/s",
                              link.cluster.intra.latency_s * 1e6, link.cluster.intra.bandwidth_Bps / 1e9);
    }
    std::map<std::pair<std::string, int>, Measured> measured;
    if (!measured_path.empty()) measured = load_measured(measured_path);

    // Every micro-batch size the tables use, profiled once each.
    std::set<int64_t> sizes;
    for (int m : micro) sizes.insert(micro_size(batch, m));
    std::map<int, std::vector<int>> project_micro;
    for (int p : project) {
      std::vector<int> ms{p, 2 * p, 4 * p, 8};
      std::sort(ms.begin(), ms.end());
      ms.erase(std::unique(ms.begin(), ms.end()), ms.end());
      project_micro[p] = ms;
      for (int m : ms) sizes.insert(micro_size(batch, m));
    }
    const std::vector<int64_t> batches(sizes.rbegin(), sizes.rend());
    std::printf(
        "# pipeline_simulation: deep-mlp depth %lld width %lld, global batch %lld, profiled at micro-batch "
        "sizes %s with %d thread(s), per layer the smallest of %d medians of %d\n",
        static_cast<long long>(depth), static_cast<long long>(width), static_cast<long long>(batch),
        fmt::format("{}", fmt::join(batches, ",")).c_str(), threads, profiles, repeats);
    std::printf("# messages: %s\n", link_note.c_str());
    std::fflush(stdout);
    const Model main_model = profile(depth, width, batches, threads, repeats, profiles);
    const auto& prof = main_model.profile;
    const auto layers = static_cast<int64_t>(prof.layers.size());

    // ---- P = 2 against the measurement ------------------------------------------
    const int stages = 2;
    const auto split = split_text.empty() ? std::vector<int64_t>{layers / 2, layers - layers / 2}
                                          : loom::pipeline::parse_split(split_text, layers, stages);
    std::printf("\n## P = 2, split %s; costs per micro-batch in ms (profiled, one process alone)\n",
                fmt::format("{}", fmt::join(split, ",")).c_str());
    std::printf("%3s %6s %9s %9s %9s %9s %8s\n", "M", "micro", "fwd s0", "bwd s0", "fwd s1", "bwd s1", "msg");
    for (int m : micro) {
      const auto c = stage_costs(prof, split, micro_size(batch, m), link);
      std::printf("%3d %6lld %9.2f %9.2f %9.2f %9.2f %8.3f\n", m, static_cast<long long>(micro_size(batch, m)),
                  c.forward[0] * 1e3, c.backward[0] * 1e3, c.forward[1] * 1e3, c.backward[1] * 1e3, c.message * 1e3);
    }
    std::printf("\n%-8s %3s %7s | %-13s | %-13s | %-15s | %-15s | %-13s %-15s", "schedule", "M", "theory", "sim s0 s1",
                "measured s0 s1", "sim vs meas", "theory vs meas", "sim@trace", "sim@trace vs m");
    for (double x : overlap_slowdown) std::printf(" | %-11s %-15s", fmt::format("sim+{}", x).c_str(), "vs meas");
    std::printf("\n");
    for (ScheduleKind kind : {ScheduleKind::gpipe, ScheduleKind::one_f_one_b}) {
      const std::string name = loom::pipeline::schedule_name(kind);
      for (int m : micro) {
        const auto c = stage_costs(prof, split, micro_size(batch, m), link);
        const auto run = loom::pipeline::simulate(kind, m, c);
        const auto idle = window_idle(kind, m, c, run);
        for (int s = 0; s < stages; ++s) {
          if (std::abs(idle[s] - run.idle_share[s]) > 1e-9) {
            std::printf("# note: %s M=%d stage %d: simulate's idle_share %.4f, the bench's window %.4f\n", name.c_str(),
                        m, s, run.idle_share[s], idle[s]);
          }
        }
        // Self-check: the processor-sharing simulation without a slowdown is simulate().
        const auto same = window_idle_intervals(simulate_shared(kind, m, c, 1.0));
        for (int s = 0; s < stages; ++s) {
          if (std::abs(same[s] - idle[s]) > 1e-9) {
            std::printf("# note: %s M=%d stage %d: simulate_shared(X=1) %.4f != simulate %.4f\n", name.c_str(), m, s,
                        same[s], idle[s]);
          }
        }
        const double th = loom::pipeline::theoretical_bubble(stages, m);
        std::string meas = "-", e_sim = "-", e_th = "-", at_trace = "-", e_trace = "-";
        const auto it = measured.find({name, m});
        if (it != measured.end() && it->second.idle.size() == static_cast<size_t>(stages)) {
          const auto& mv = it->second.idle;
          meas = fmt_list(mv, "{:.3f}");
          e_sim = rel_pair(idle[0], mv[0], idle[1], mv[1]);
          e_th = rel_pair(th, mv[0], th, mv[1]);
          if (it->second.forward.size() == static_cast<size_t>(stages) &&
              it->second.backward.size() == static_cast<size_t>(stages)) {
            StageCosts tc{it->second.forward, it->second.backward,
                          it->second.message >= 0 ? it->second.message : c.message};
            const auto tr = loom::pipeline::simulate(kind, m, tc);
            const auto ti = window_idle(kind, m, tc, tr);
            at_trace = fmt_list(ti, "{:.3f}");
            e_trace = rel_pair(ti[0], mv[0], ti[1], mv[1]);
          }
        }
        std::printf("%-8s %3d %7.3f | %-13s | %-14s | %-15s | %-15s | %-13s %-15s", name.c_str(), m, th,
                    fmt_list(idle, "{:.3f}").c_str(), meas.c_str(), e_sim.c_str(), e_th.c_str(), at_trace.c_str(),
                    e_trace.c_str());
        for (double x : overlap_slowdown) {
          const auto xi = window_idle_intervals(simulate_shared(kind, m, c, x));
          std::string e_x = "-";
          if (it != measured.end() && it->second.idle.size() == 2) {
            e_x = rel_pair(xi[0], it->second.idle[0], xi[1], it->second.idle[1]);
          }
          std::printf(" | %-11s %-15s", fmt_list(xi, "{:.3f}").c_str(), e_x.c_str());
        }
        std::printf("\n");
      }
    }
    std::printf("(relative errors: (x - measured) / measured, per stage)\n");

    // ---- Projection to more stages -----------------------------------------------
    std::set<int64_t> psizes;
    for (const auto& [p, ms] : project_micro)
      for (int m : ms) psizes.insert(micro_size(batch, m));
    const Model deeper = project_depth == depth
                             ? Model{}
                             : profile(project_depth, width, std::vector<int64_t>(psizes.rbegin(), psizes.rend()),
                                       threads, repeats, profiles);
    const auto& pprof = project_depth == depth ? prof : deeper.profile;
    const auto players = static_cast<int64_t>(pprof.layers.size());
    std::printf(
        "\n## projection: deep-mlp depth %lld (%lld layers), balanced_split on the profiled forward + "
        "backward times at each M's micro-batch size\n",
        static_cast<long long>(project_depth), static_cast<long long>(players));
    std::printf("%3s %-8s %3s %6s %7s | %-21s | %9s %9s %7s %7s | %s\n", "P", "schedule", "M", "micro", "theory",
                "sim idle mean [min,max]", "makespan", "ideal", "ratio", "theory", "split (layers per stage)");
    for (int p : project) {
      LOOM_CHECK(2 * p <= players, loom::ConfigError,
                 "--project {}: {} layers cannot give each of {} stages 2 layers (use --project-depth)", p, players, p);
      for (int m : project_micro[p]) {
        const int64_t mb = micro_size(batch, m);
        std::vector<double> layer_costs;
        for (int64_t i = 0; i < players; ++i) {
          const auto t = pprof.layer_at(static_cast<size_t>(i), mb);
          layer_costs.push_back(t.forward_s + t.backward_s);
        }
        const auto psplit = loom::pipeline::balanced_split(layer_costs, p);
        const auto c = stage_costs(pprof, psplit, mb, link);
        double work = 0;
        for (int s = 0; s < p; ++s) work += m * (c.forward[s] + c.backward[s]);
        for (ScheduleKind kind : {ScheduleKind::gpipe, ScheduleKind::one_f_one_b}) {
          const auto run = loom::pipeline::simulate(kind, m, c);
          const auto idle = window_idle(kind, m, c, run);
          const double mean = std::accumulate(idle.begin(), idle.end(), 0.0) / p;
          const auto [lo, hi] = std::minmax_element(idle.begin(), idle.end());
          const double th = loom::pipeline::theoretical_bubble(p, m);
          std::printf("%3d %-8s %3d %6lld %7.3f | %.3f [%.3f,%.3f]   | %9.2f %9.2f %7.3f %7.3f | %s\n", p,
                      loom::pipeline::schedule_name(kind).c_str(), m, static_cast<long long>(mb), th, mean, *lo, *hi,
                      run.makespan * 1e3, work / p * 1e3, run.makespan / (work / p), 1.0 / (1.0 - th),
                      fmt::format("{}", fmt::join(psplit, ",")).c_str());
        }
      }
    }
    std::printf(
        "(makespan, ideal in ms per step; ideal = all forward + backward work / P; ratio = makespan / ideal; "
        "theory ratio = 1 / (1 - (P-1)/(M+P-1)) = (M+P-1)/M)\n");
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pipeline_simulation: %s\n", e.what());
    return 1;
  }
}
