// The pipeline schedules simulated per micro-batch against the measured bubbles, and
// projected to more stages (issue 18).
//
//   build/bench/pipeline_simulation [--depth 25 --width 523 --batch-size 512 --micro 1,2,4,8]
//       [--threads 1 --repeats 7 --profiles 3] [--split 25,25] [--message-us U | --cluster FILE]
//       [--measured FILE [--fit-from FILE]] [--overlap-slowdown X,...] [--project 8,16] [--project-depth D]
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
// 2b. With --measured rows that carry "contention" (bench/pipeline_bubble.py --json):
//    the contention-aware simulation (simulate_contention), whose parameters are all
//    measured in the pipeline from the traces: per stage and direction the action's time
//    alone and shared (processor sharing: the rate changes whenever the other stage
//    starts or stops computing), per stage the stage loop's time between actions (before
//    and after waiting for a message), and the message's time from the sender's end to
//    the receiver. Held out: each row simulated with the parameters fitted on the other
//    schedule's runs at the same M (or, with --fit-from, on the same schedule and M of
//    another bench run), and with those fitted on every round but the last against the
//    last round; "jitter" draws each action's work from the fitted spans' (bootstrap,
//    median idle share of 201 simulations). "own" (in-sample) is printed for reference.
// 3. Projection: the same model (or --project-depth) cut into P = 8, 16 (--project)
//    stages by pipeline::balanced_split on the profiled forward + backward times at the
//    micro-batch size of each M, for M = P, 2P, 4P and 8: the simulated idle share
//    (mean and range over the stages) against the theory, and the makespan of one step
//    against the ideal (all the work / P). With contention rows measured: also the
//    contention-aware simulation with a core per stage (no sharing) and the per-action
//    gap and wire measured at P = 2 (the mean of the largest M's rows).
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
#include <array>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <map>
#include <numeric>
#include <random>
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
#include "pipeline_sim_models.h"

namespace {

using loom::pipeline::ScheduleKind;
using loom::pipeline::StageCosts;
using namespace pipeline_sim;

struct Measured {
  std::vector<double> idle;       // per stage
  std::vector<double> forward;    // per stage, optional (empty)
  std::vector<double> backward;   // per stage, optional
  double message = -1;            // optional (< 0: not given)
  Contention contention;          // optional (.valid)
  Contention early;               // fitted on every round but the last (optional)
  std::vector<double> last_idle;  // the last round's idle shares (with .early)
};

Contention parse_contention(const nlohmann::json& c) {
  Contention out;
  const auto alone = c.at("alone_s").get<std::vector<std::vector<double>>>();
  const auto shared = c.at("shared_s").get<std::vector<std::vector<double>>>();
  const auto pre = c.at("gap_pre_s").get<std::vector<double>>();
  const auto post = c.at("gap_post_s").get<std::vector<double>>();
  LOOM_CHECK(alone.size() == 2 && shared.size() == 2 && pre.size() == 2 && post.size() == 2, loom::DataError,
             "contention: 2 stages expected");
  for (int s = 0; s < 2; ++s) {
    for (int d = 0; d < 2; ++d) {
      out.alone[s][d] = alone[s].at(d);
      out.shared[s][d] = std::max(shared[s].at(d), alone[s].at(d) * 1e-3);
    }
    out.gap_pre[s] = std::max(0.0, pre[s]);
    out.gap_post[s] = std::max(0.0, post[s]);
  }
  out.wire = std::max(0.0, c.value("wire_s", 0.0));  // < 0: the receiver had it before the span ended
  if (c.contains("alone_samples_s")) {
    const auto smp = c.at("alone_samples_s").get<std::vector<std::vector<std::vector<double>>>>();
    for (int s = 0; s < 2 && s < static_cast<int>(smp.size()); ++s)
      for (int d = 0; d < 2 && d < static_cast<int>(smp[s].size()); ++d) out.samples[s][d] = smp[s][d];
  }
  out.valid = true;
  return out;
}

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
      if (r.contains("contention")) m.contention = parse_contention(r.at("contention"));
      if (r.contains("fit_early_rounds")) {
        m.early = parse_contention(r.at("fit_early_rounds"));
        m.last_idle = r.at("last_round_idle_share").get<std::vector<double>>();
      }
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
  std::string split_text, cluster_path, measured_path, fit_from_path;
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
  app.add_option("--fit-from", fit_from_path,
                 "contention-aware table: take the held-out parameters from this bench JSON (an earlier run) "
                 "instead of the other schedule's");
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
    std::map<std::pair<std::string, int>, Measured> measured, fit_from;
    if (!measured_path.empty()) measured = load_measured(measured_path);
    if (!fit_from_path.empty()) fit_from = load_measured(fit_from_path);

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
        // Self-check: the contention-aware simulation without gaps and with shared = alone
        // is simulate(); with shared = 1.5 x alone it is simulate_shared(X = 1.5).
        for (double x : {1.0, 1.5}) {
          ContentionModel cm;
          for (int s = 0; s < stages; ++s) {
            cm.alone.push_back({c.forward[s], c.backward[s]});
            cm.shared.push_back({x * c.forward[s], x * c.backward[s]});
            cm.gap_pre.push_back(0.0);
            cm.gap_post.push_back(0.0);
          }
          cm.wire = c.message;
          const auto ci = window_idle_intervals(simulate_contention(kind, m, cm));
          const auto ref = x == 1.0 ? idle : window_idle_intervals(simulate_shared(kind, m, c, x));
          for (int s = 0; s < stages; ++s) {
            if (std::abs(ci[s] - ref[s]) > 1e-9) {
              std::printf("# note: %s M=%d stage %d: simulate_contention %.4f != reference %.4f (X = %g)\n",
                          name.c_str(), m, s, ci[s], ref[s], x);
            }
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

    // ---- P = 2, contention-aware, with parameters measured in the pipeline ----------
    // Per-action gap and wire for the projection: the mean over the rows at the largest
    // measured M (both schedules, both stages) of the fitted gaps, the median wire.
    double proj_gap_pre = -1, proj_gap_post = -1, proj_wire = -1;
    bool any_contention = false;
    for (const auto& [key, mv] : measured) any_contention = any_contention || mv.contention.valid;
    if (any_contention) {
      std::printf(
          "\n## P = 2, contention-aware simulation: parameters measured from the traces (ms; x = shared / alone)\n");
      std::printf("%-8s %3s | %-31s | %-31s | %-11s | %-11s | %s\n", "schedule", "M", "alone fwd0 bwd0 fwd1 bwd1",
                  "x fwd0 bwd0 fwd1 bwd1", "pre s0 s1", "post s0 s1", "wire");
      for (const auto& [key, mv] : measured) {
        if (!mv.contention.valid) continue;
        const auto& c = mv.contention;
        std::printf("%-8s %3d | %7.2f %7.2f %7.2f %7.2f | %7.2f %7.2f %7.2f %7.2f | %5.3f %5.3f | %5.3f %5.3f | %.3f\n",
                    key.first.c_str(), key.second, c.alone[0][0] * 1e3, c.alone[0][1] * 1e3, c.alone[1][0] * 1e3,
                    c.alone[1][1] * 1e3, c.shared[0][0] / c.alone[0][0], c.shared[0][1] / c.alone[0][1],
                    c.shared[1][0] / c.alone[1][0], c.shared[1][1] / c.alone[1][1], c.gap_pre[0] * 1e3,
                    c.gap_pre[1] * 1e3, c.gap_post[0] * 1e3, c.gap_post[1] * 1e3, c.wire * 1e3);
      }
      std::printf(
          "\nIdle share per stage (s0 s1). own: the row's own parameters (in-sample); held out: fitted on %s at "
          "the same M (the columns 'no gap' / 'no share' drop the gaps / the sharing from it); rounds: fitted on "
          "the rounds but the last, checked against the last round's measurement; jitter: each action's work "
          "drawn from the fitted runs' spans, median of 201 simulations.\n",
          fit_from.empty() ? "the other schedule's runs" : ("the same schedule in " + fit_from_path).c_str());
      std::printf("%-8s %3s | %-11s | %-27s | %-27s | %-27s | %-27s | %-27s | %-11s | %-27s | %-27s\n", "schedule", "M",
                  "measured", "own", "held out", "held out, jitter", "no gap", "no share", "last round", "rounds",
                  "rounds, jitter");
      std::vector<double> pre_v, post_v, wire_v;
      int max_m = 0;
      for (const auto& [key, mv] : measured)
        if (mv.contention.valid) max_m = std::max(max_m, key.second);
      for (ScheduleKind kind : {ScheduleKind::gpipe, ScheduleKind::one_f_one_b}) {
        const std::string name = loom::pipeline::schedule_name(kind);
        const std::string other = loom::pipeline::schedule_name(kind == ScheduleKind::gpipe ? ScheduleKind::one_f_one_b
                                                                                            : ScheduleKind::gpipe);
        for (int m : micro) {
          const auto it = measured.find({name, m});
          if (it == measured.end() || !it->second.contention.valid || it->second.idle.size() != 2) continue;
          const auto& mv = it->second.idle;
          auto run = [&](const Contention& c, bool sharing, bool gaps) {
            return window_idle_intervals(simulate_contention(kind, m, two_stage_model(c, sharing, gaps)));
          };
          auto jit = [&](const Contention& c) { return jitter_idle(kind, m, two_stage_model(c, true, true), 201); };
          auto cell = [&](const std::vector<double>& x, const std::vector<double>& ref) {
            return fmt::format("{:<11} {:<15}", fmt_list(x, "{:.3f}"), rel_pair(x[0], ref[0], x[1], ref[1]));
          };
          const std::string none = fmt::format("{:<11} {:<15}", "-", "-");
          const std::string own = cell(run(it->second.contention, true, true), mv);
          std::string held = none, held_j = none, nogap = none, noshare = none;
          const auto ot = fit_from.empty() ? measured.find({other, m}) : fit_from.find({name, m});
          if (ot != (fit_from.empty() ? measured.end() : fit_from.end()) && ot->second.contention.valid) {
            held = cell(run(ot->second.contention, true, true), mv);
            held_j = cell(jit(ot->second.contention), mv);
            nogap = cell(run(ot->second.contention, true, false), mv);
            noshare = cell(run(ot->second.contention, false, true), mv);
          }
          std::string last = "-", rounds = none, rounds_j = none;
          if (it->second.early.valid && it->second.last_idle.size() == 2) {
            last = fmt_list(it->second.last_idle, "{:.3f}");
            rounds = cell(run(it->second.early, true, true), it->second.last_idle);
            rounds_j = cell(jit(it->second.early), it->second.last_idle);
          }
          std::printf("%-8s %3d | %-11s | %s | %s | %s | %s | %s | %-11s | %s | %s\n", name.c_str(), m,
                      fmt_list(mv, "{:.3f}").c_str(), own.c_str(), held.c_str(), held_j.c_str(), nogap.c_str(),
                      noshare.c_str(), last.c_str(), rounds.c_str(), rounds_j.c_str());
          if (m == max_m) {
            for (int s = 0; s < 2; ++s) {
              pre_v.push_back(it->second.contention.gap_pre[s]);
              post_v.push_back(it->second.contention.gap_post[s]);
            }
            wire_v.push_back(it->second.contention.wire);
          }
        }
      }
      if (!pre_v.empty()) {
        proj_gap_pre = std::accumulate(pre_v.begin(), pre_v.end(), 0.0) / pre_v.size();
        proj_gap_post = std::accumulate(post_v.begin(), post_v.end(), 0.0) / post_v.size();
        std::sort(wire_v.begin(), wire_v.end());
        proj_wire = wire_v[wire_v.size() / 2];
        std::printf(
            "(projection's per-action gap, the mean of the M = %d rows: pre %.3f ms + post %.3f ms; wire %.3f ms)\n",
            max_m, proj_gap_pre * 1e3, proj_gap_post * 1e3, proj_wire * 1e3);
      }
      // The traces' alone costs against the profile's (the projection uses the profile).
      for (int m : micro) {
        const auto it = measured.find({"gpipe", m});
        if (it == measured.end() || !it->second.contention.valid) continue;
        const auto c = stage_costs(prof, split, micro_size(batch, m), link);
        const auto& a = it->second.contention.alone;
        std::printf("# M=%d: traces' alone / profile: fwd0 %.2f bwd0 %.2f fwd1 %.2f bwd1 %.2f\n", m,
                    a[0][0] / c.forward[0], a[0][1] / c.backward[0], a[1][0] / c.forward[1], a[1][1] / c.backward[1]);
      }
    }

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
    if (proj_gap_pre >= 0) {
      std::printf(
          "(last columns, after the split: a core per stage with the measured per-action gap %.3f + %.3f ms and wire "
          "%.3f ms: idle mean [min,max], makespan, ratio)\n",
          proj_gap_pre * 1e3, proj_gap_post * 1e3, proj_wire * 1e3);
    }
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
          std::string gap_cols;
          if (proj_gap_pre >= 0) {
            // A core per stage (no sharing), the measured per-action gap and wire.
            ContentionModel cm;
            for (int s = 0; s < p; ++s) {
              cm.alone.push_back({c.forward[s], c.backward[s]});
              cm.gap_pre.push_back(proj_gap_pre);
              cm.gap_post.push_back(proj_gap_post);
            }
            cm.shared = cm.alone;
            cm.wire = proj_wire;
            cm.cores = p;
            const auto iv = simulate_contention(kind, m, cm);
            const auto gi = window_idle_intervals(iv);
            const double gmean = std::accumulate(gi.begin(), gi.end(), 0.0) / p;
            const auto [glo, ghi] = std::minmax_element(gi.begin(), gi.end());
            double gend = 0;
            for (const auto& st : iv) gend = std::max(gend, st.back().second);
            gap_cols = fmt::format(" | {:.3f} [{:.3f},{:.3f}] {:9.2f} {:7.3f}", gmean, *glo, *ghi, gend * 1e3,
                                   gend / (work / p));
          }
          std::printf("%3d %-8s %3d %6lld %7.3f | %.3f [%.3f,%.3f]   | %9.2f %9.2f %7.3f %7.3f | %s%s\n", p,
                      loom::pipeline::schedule_name(kind).c_str(), m, static_cast<long long>(mb), th, mean, *lo, *hi,
                      run.makespan * 1e3, work / p * 1e3, run.makespan / (work / p), 1.0 / (1.0 - th),
                      fmt::format("{}", fmt::join(psplit, ",")).c_str(), gap_cols.c_str());
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
