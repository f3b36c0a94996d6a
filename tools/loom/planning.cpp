#include "planning.h"

#include <fmt/ranges.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "loom/core/atomic_file.h"
#include "loom/core/error.h"
#include "loom/core/log.h"
#include "loom/launch/self_executable.h"
#include "loom/plan/calibrate.h"
#include "loom/plan/overhead.h"
#include "loom/plan/verify.h"
#include "loom/strategies/bench_slowdown.h"
#include "loom/train/model_for.h"
#include "loom/train/strategy_options.h"

namespace loom::cli {

namespace {

std::string read_text(const std::string& path, const char* what) {
  std::ifstream in(path);
  LOOM_CHECK(in.good(), ConfigError, "cannot read the {} {}", what, path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream s(text);
  std::string item;
  while (std::getline(s, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

}  // namespace

plan::ModelProfile measure_profile(const train::TrainConfig& c, int max_processes, int repeats,
                                   const std::vector<std::string>& anchor_args) {
  train::ModelForConfig m = train::model_for(c);
  plan::ProfileOptions o;
  o.batches = plan::batches_that_matter(c.batch_size, std::max(1, max_processes));
  o.threads = c.threads;
  o.repeats = repeats;
  o.optimizer = train::optimizer_options(c);
  plan::ModelProfile profile = plan::profile_model(m.model, c.model, m.sample_shape, o);
  log::info("profiled {} ({} parameters, {} layers) at batch sizes {} with {} thread(s): {:.2f} ms per step at {}",
            c.model, profile.param_count(), profile.layers.size(), fmt::join(profile.batches, ","), o.threads,
            1e3 * profile.step_at(profile.batches.front()), profile.batches.front());
  if (!anchor_args.empty()) {
    // The plain loop on uniform inputs is not the trainer on the real data (the CNN: 1.2-1.3x
    // apart on this machine): one short real run sets the level, the profile the shape.
    plan::MeasureOptions mo;
    mo.loom = launch::self_executable();
    mo.steps = 40;
    mo.warmup_steps = 10;
    // The profile is of a process at full speed: a --bench-slowdown is the cluster's
    // process_speeds (calibrated with it), not the profile's.
    std::vector<std::string> args =
        replace_flags(anchor_args, {"bench-slowdown"}, {}, [](const std::string&) { return true; });
    for (const char* a : {"--nproc", "1", "--log-level", "warn"}) args.emplace_back(a);
    const plan::MeasuredRun run = plan::measure(args, mo);
    LOOM_CHECK(run.ok, ConfigError, "plan: the one-process run that anchors the profile failed: {}", run.error);
    LOOM_CHECK(run.samples_per_s > 0 && profile.step_at(c.batch_size) > 0, ConfigError,
               "plan: the one-process run that anchors the profile measured no rate ({} samples/s)", run.samples_per_s);
    const double measured = static_cast<double>(c.batch_size) / run.samples_per_s;
    const double factor = measured / profile.step_at(c.batch_size);
    profile.scale_times(factor);
    log::info("anchored the profile to a real one-process run: {:.2f} ms per step at {} (x{:.3f})", 1e3 * measured,
              c.batch_size, factor);
  }
  return profile;
}

Planned plan_job(const train::TrainConfig& c, const PlanInputs& in) {
  Planned out;
  // What can be wrong in the input is checked before anything is measured.
  std::vector<std::string> strategies = split_list(in.strategies);
  for (const auto& s : strategies) {
    static const std::vector<std::string> known{"single", "allreduce", "ps", "pipeline", "hybrid"};
    LOOM_CHECK(std::find(known.begin(), known.end(), s) != known.end(), ConfigError,
               "--strategies: unknown strategy '{}' (single, allreduce, ps, pipeline, hybrid)", s);
  }
  if (!c.bench_slowdown.empty()) {
    // The benchmark aid's spec is checked here, not first in every calibrating rank; a
    // pipeline or a mesh does not take it, so their plans would be predicted slowed and
    // run at full speed: they are left out.
    loom::strategies::bench_slowdown_for(c.bench_slowdown, -1);
    const std::vector<std::string> takes_it{"single", "allreduce", "ps"};
    if (strategies.empty()) strategies = takes_it;
    strategies.erase(std::remove_if(strategies.begin(), strategies.end(),
                                    [&](const std::string& s) {
                                      return std::find(takes_it.begin(), takes_it.end(), s) == takes_it.end();
                                    }),
                     strategies.end());
    LOOM_CHECK(!strategies.empty(), ConfigError,
               "--bench-slowdown applies to single, allreduce and ps only, and --strategies {} lists none of them",
               in.strategies);
    log::info("plan: with --bench-slowdown, only single, allreduce and ps plans (the strategies that take it)");
  }
  if (!in.profile_file.empty()) {
    out.profile = plan::ModelProfile::from_json(read_text(in.profile_file, "profile"), in.profile_file);
  }
  if (!in.cluster_file.empty()) out.cluster = plan::Cluster::load(in.cluster_file);
  if (in.profile_file.empty()) {
    out.profile = measure_profile(c, in.max_processes, in.profile_repeats, in.anchor_args);
  }
  if (!in.cluster_file.empty()) {
    // loaded above
  } else if (in.calibrate) {
    plan::CalibrateOptions o;
    o.processes = std::max(2, in.max_processes);
    o.threads = c.threads;
    o.self = launch::self_executable();
    o.budget_s = in.calibrate_budget_s;
    o.bench_slowdown = c.bench_slowdown;
    out.cluster = plan::calibrate(o);
    plan::OverheadOptions oo;
    oo.loom = o.self;
    oo.max_processes = o.processes;
    oo.threads = c.threads;
    oo.steps = in.overhead_steps;
    plan::measure_overheads(oo, out.cluster);
    if (!in.save_cluster.empty()) {
      write_file_atomic(in.save_cluster, out.cluster.to_toml());
      log::info("wrote the calibrated cluster to {}", in.save_cluster);
    }
  } else {
    out.cluster = plan::Cluster::this_machine(in.max_processes);
    log::warn(
        "plan: this machine is not calibrated (no --cluster FILE, no --calibrate): link speeds and core "
        "contention are assumed, not measured");
  }
  plan::Job& job = out.job;
  job.batch_size = c.batch_size;
  job.threads = c.threads;
  job.bucket_mb = c.bucket_mb;
  job.staleness = c.staleness;
  job.max_processes = std::min(in.max_processes, out.cluster.max_processes());
  job.strategies = strategies;
  out.ranked = plan::rank(job, out.profile, out.cluster);
  LOOM_CHECK(!out.ranked.empty(), ConfigError, "plan: no plan for --strategies {} with {} process(es)", in.strategies,
             job.max_processes);
  return out;
}

const plan::RankedPlan& choose_for_auto(const Planned& planned) {
  int64_t smallest = -1;
  bool fits_but_async = false;
  for (const auto& r : planned.ranked) {
    if (r.prediction.fits && r.prediction.note.empty()) return r;
    if (r.prediction.fits) fits_but_async = true;
    if (smallest < 0 || r.prediction.memory_bytes < smallest) smallest = r.prediction.memory_bytes;
  }
  LOOM_CHECK(!fits_but_async, ConfigError,
             "--strategy auto: only asynchronous plans fit, and auto runs only plans that train as one process "
             "would; see `loom plan`");
  LOOM_THROW(ConfigError,
             "--strategy auto: none of the {} plans fits in memory (the smallest needs {} MiB per process); "
             "see `loom plan`",
             planned.ranked.size(), smallest >> 20);
}

std::string why_chosen(const Planned& planned, const plan::RankedPlan& chosen) {
  std::string single;
  std::string runner_up;
  for (const auto& r : planned.ranked) {
    if (r.plan.strategy == "single" && single.empty() && chosen.plan.strategy != "single" &&
        r.prediction.samples_per_s > 0) {
      single = fmt::format(", {:.2f}x one process", chosen.prediction.samples_per_s / r.prediction.samples_per_s);
    }
    if (&r != &chosen && runner_up.empty() && r.prediction.fits && r.prediction.note.empty()) {
      runner_up =
          fmt::format("; next best {} {} at {:.0f}", r.plan.strategy, r.plan.degrees(), r.prediction.samples_per_s);
    }
  }
  return fmt::format(
      "--strategy auto chose {} {}: predicted {:.0f} samples/s{} ({} plans over up to {} processes{}); "
      "its step is dominated by {}",
      chosen.plan.strategy, chosen.plan.degrees(), chosen.prediction.samples_per_s, single, planned.ranked.size(),
      planned.job.max_processes, runner_up, chosen.prediction.dominant);
}

void apply_plan(const plan::RankedPlan& chosen, const plan::Job& job, train::TrainConfig& c) {
  const plan::Plan& p = chosen.plan;
  const train::TrainConfig user = c;
  c = train::as_single_process(user);  // every strategy flag at its default, then the plan's and the user's it uses
  c.strategy = p.strategy;
  c.nproc = p.processes();
  c.predicted_samples_per_s = chosen.prediction.samples_per_s;
  const bool ddp = p.strategy == "allreduce" || p.strategy == "hybrid";
  if (ddp) {
    c.bucket_mb = user.bucket_mb;
    c.grad_compression = user.grad_compression;
    c.find_unused_parameters = user.find_unused_parameters;
  }
  if (p.strategy == "single" || p.strategy == "allreduce" || p.strategy == "ps") c.bench_slowdown = user.bench_slowdown;
  if (p.strategy == "allreduce") {
    c.nproc = p.workers;
    c.zero = p.zero;
    c.sync = user.sync;
    c.sync_every = user.sync_every;
    if (p.shard_weights_auto) {
      c.partition = "proportional";
      c.shard_weights = "auto";
    }
  } else if (p.strategy == "ps") {
    c.nproc = p.workers;
    c.servers = p.servers;
    c.consistency = p.consistency;
    c.staleness = job.staleness;
    c.ps_slice_mb = user.ps_slice_mb;
    c.ps_host = user.ps_host;
    c.ps_save = user.ps_save;
    c.ps_load = user.ps_load;
    c.insecure = user.insecure;
  } else if (p.strategy == "pipeline" || p.strategy == "hybrid") {
    c.micro_batches = p.micro_batches;
    c.schedule = p.schedule;
    c.split = fmt::format("{}", fmt::join(p.split, ","));
    if (p.strategy == "hybrid") {
      c.dp = p.workers;
      c.pp = p.stages;
    }
  }
}

bool file_sets_strategy_flags(const train::TrainConfig& c, const OptionTable& options) {
  for (const auto& f : train::flags_unused_by(c, "single")) {
    if (options.given_on_command_line(f)) continue;
    log::warn("plan: the config file sets --{}, which a one-process run refuses: the profile is not anchored to one",
              f);
    return true;
  }
  return false;
}

std::vector<std::string> replace_flags(const std::vector<std::string>& argv, const std::vector<std::string>& names,
                                       const std::vector<std::string>& extra,
                                       const std::function<bool(const std::string&)>& takes_value) {
  std::vector<std::string> out;
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    bool drop = false;
    for (const auto& n : names) {
      const bool valued = takes_value(n);
      if (a == "--" + n || (!valued && a == "--no-" + n)) {
        drop = true;
        if (valued) ++i;  // and its value
        break;
      }
      if (a.rfind("--" + n + "=", 0) == 0) {
        drop = true;
        break;
      }
    }
    if (!drop) out.push_back(a);
  }
  out.insert(out.end(), extra.begin(), extra.end());
  return out;
}

const std::vector<std::string>& flags_a_plan_sets() {
  static const std::vector<std::string> flags{"strategy", "nproc",         "zero",          "zero-shard-weights",
                                              "servers",  "consistency",   "staleness",     "dp",
                                              "pp",       "micro-batches", "schedule",      "split",
                                              "balance",  "partition",     "shard-weights", "predicted-samples-per-s",
                                              "cluster",  "profile"};  // the last two: the planner's own inputs
  return flags;
}

const std::vector<std::string>& run_length_and_output_flags() {
  static const std::vector<std::string> flags{"epochs",          "steps",          "time-limit",
                                              "metrics",         "trace",          "save",
                                              "save-scripted",   "checkpoint-dir", "checkpoint-every",
                                              "resume",          "max-restarts",   "record-indices",
                                              "log-every",       "progress",       "eval",
                                              "eval-batch-size", "save-nonfinite", "log-level"};
  return flags;
}

}  // namespace loom::cli
