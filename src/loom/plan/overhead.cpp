#include "loom/plan/overhead.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>

#include "loom/core/error.h"
#include "loom/core/log.h"
#include "loom/models/registry.h"
#include "loom/plan/cost_model.h"
#include "loom/plan/profile.h"
#include "loom/plan/verify.h"

namespace loom::plan {

namespace {

// Rows per worker or micro-batch of the tiny job: the global batch is 16 x the workers
// (or the micro-batches), so every data-parallel split is even.
constexpr int64_t kRows = 16;

// The tiny models: deep-mlp of width 8, depth 2 (4 parameter tensors) and depth 16 (32
// tensors). The second, for the strategies whose cost goes per tensor (the reducer's
// hooks and copies, the servers' slices), gives the cost per tensor.
constexpr int64_t kShallow = 2, kDeep = 16;

// The tiny job, as `loom train` flags.
std::vector<std::string> tiny_args(int64_t depth, int threads, int64_t batch) {
  return {"--model",      "deep-mlp",
          "--width",      "8",
          "--depth",      std::to_string(depth),
          "--data",       "synthetic",
          "--batch-size", std::to_string(batch),
          "--threads",    std::to_string(threads),
          "--lr",         "0.01",
          "--log-level",  "warn"};
}

ModelProfile tiny_profile(int64_t depth, int threads, int max_processes) {
  models::ModelOptions mo;
  mo.width = 8;
  mo.depth = depth;
  auto model = models::make_model("deep-mlp", mo);
  ProfileOptions po;
  po.batches = batches_that_matter(kRows * std::max(1, max_processes), std::max(1, max_processes));
  po.threads = threads;
  po.repeats = 5;
  return profile_model(model, fmt::format("deep-mlp depth {} (tiny)", depth), mo.sample_shape, po);
}

}  // namespace

void measure_overheads(const OverheadOptions& options, Cluster& cluster) {
  LOOM_CHECK(!options.loom.empty() && options.max_processes >= 1 && options.threads >= 1 && options.steps >= 8,
             ConfigError, "measure_overheads: needs the loom executable, >= 1 process and thread, >= 8 steps");
  const int max = std::min(options.max_processes, cluster.max_processes());
  std::vector<Plan> plans{Plan{}};
  for (int n = 2; n <= max; ++n) plans.push_back(Plan::allreduce(n));
  for (int w = 1; w + 1 <= max; ++w) plans.push_back(Plan::ps(w, 1, "sync"));
  if (max >= 4) plans.push_back(Plan::ps(2, 2, "sync"));
  if (max >= 2) {
    plans.push_back(Plan::pipeline(2, 2, "1f1b", {}));
    plans.push_back(Plan::pipeline(2, 4, "1f1b", {}));
  }
  if (max >= 3) plans.push_back(Plan::pipeline(std::min(max, 3), std::min(max, 3), "1f1b", {}));

  const ModelProfile shallow = tiny_profile(kShallow, options.threads, max);
  const ModelProfile deep = tiny_profile(kDeep, options.threads, max);
  Job job;
  job.threads = options.threads;
  job.max_processes = max;
  cluster.overheads.clear();  // the residual is taken against the model without them
  // The tiny runs go at full speed (no --bench-slowdown): predict them so.
  Cluster flat = cluster;
  flat.process_speeds.clear();
  MeasureOptions mo;
  mo.loom = options.loom;
  mo.steps = options.steps;
  mo.warmup_steps = options.steps / 4;
  mo.log_every = std::max<int64_t>(1, options.steps / 8);
  mo.warmup_steps -= mo.warmup_steps % mo.log_every;
  mo.timeout_s = options.timeout_s;
  std::vector<Overhead> measured;
  for (Plan& p : plans) {
    if (p.strategy == "pipeline") {
      // The shallow model's layers (flatten, linear, relu, linear): as even as they go.
      const auto layers = static_cast<int64_t>(shallow.layers.size());
      p.split.assign(p.stages, 0);
      for (int s = 0; s < p.stages; ++s) p.split[s] = layers / p.stages + (s < layers % p.stages ? 1 : 0);
    }
    job.batch_size = kRows * std::max<int64_t>(p.strategy == "pipeline" ? p.micro_batches : p.workers, 1);
    for (const ModelProfile* profile : {&shallow, &deep}) {
      if (profile == &deep && p.strategy == "pipeline") continue;  // per message, not per tensor
      const int64_t depth = profile == &deep ? kDeep : kShallow;
      std::vector<std::string> args = tiny_args(depth, options.threads, job.batch_size);
      for (auto& a : p.args(job)) args.push_back(std::move(a));
      const MeasuredRun run = measure(args, mo);
      LOOM_CHECK(run.ok, ConfigError, "calibrate: the {} {} run on the tiny model of depth {} failed: {}", p.strategy,
                 p.degrees(), depth, run.error);
      const double step = static_cast<double>(job.batch_size) / run.samples_per_s;
      const double predicted = predict(p, job, *profile, flat).step_s;
      Overhead o{p.strategy, p.workers, p.servers, p.stages, p.micro_batches, std::max(0.0, step - predicted)};
      o.tensors = profile->param_tensors;
      log::info(
          "calibrate: loom's own step cost, {} {}, {} tensors: measured {:.3f} ms, modelled {:.3f} ms, overhead "
          "{:.3f} ms",
          p.strategy, p.degrees(), o.tensors, 1e3 * step, 1e3 * predicted, 1e3 * o.seconds);
      measured.push_back(o);
    }
  }
  cluster.overheads = std::move(measured);
}

}  // namespace loom::plan
