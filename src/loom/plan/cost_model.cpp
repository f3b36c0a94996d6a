#include "loom/plan/cost_model.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <functional>

#include "loom/core/error.h"
#include "loom/pipeline/schedule.h"
#include "loom/pipeline/stage_split.h"

namespace loom::plan {

namespace {

constexpr double kMiB = 1024.0 * 1024.0;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Processes on the busiest node when `processes` fill nodes in order.
int per_node(int processes, const Cluster& c) { return std::min(processes, c.processes_per_node); }
bool one_node(int processes, const Cluster& c) { return processes <= c.processes_per_node; }

// Assumption (docs/planner.md): communication overlaps computation only when each busy
// process has a core to spare for it. On a node with no spare core the communication
// thread and the shared-memory copies take their time from compute, so they add.
bool can_overlap(int busy, int threads, const Cluster& c) { return busy * threads < c.cores_per_node; }

// The model's per-layer forward and backward at `batch`, slowed by `slow`. Their sum is
// scaled to the measured whole step less the optimizer step (ModelProfile::step_at): the
// layer profile's hooks add their own cost, and the step holds what is not a layer's
// (the loss read-back, zero_grad, the framework), spread over the layers in proportion.
struct Layers {
  std::vector<double> forward, backward;
  std::vector<int64_t> output_bytes, param_bytes;
  double forward_total = 0, backward_total = 0;
};

Layers layers_at(const ModelProfile& profile, int64_t batch, double slow) {
  Layers l;
  double sum = 0;
  std::vector<LayerTimes> times;
  for (size_t i = 0; i < profile.layers.size(); ++i) {
    times.push_back(profile.layer_at(i, batch));
    sum += times.back().forward_s + times.back().backward_s;
  }
  const double target = profile.step_at(batch) - profile.optimizer_s;
  const double scale = sum > 0 && target > 0 ? slow * target / sum : slow;
  for (size_t i = 0; i < times.size(); ++i) {
    l.forward.push_back(times[i].forward_s * scale);
    l.backward.push_back(times[i].backward_s * scale);
    l.output_bytes.push_back(times[i].output_bytes);
    l.param_bytes.push_back(profile.layers[i].param_bytes);
    l.forward_total += l.forward.back();
    l.backward_total += l.backward.back();
  }
  return l;
}

int64_t input_bytes(const ModelProfile& profile, int64_t batch) {
  int64_t n = batch * 4;
  for (int64_t d : profile.sample_shape) n *= d;
  return n;
}

// What autograd keeps between forward and backward: every layer's output, plus the input.
int64_t activation_bytes(const ModelProfile& profile, int64_t batch, size_t first = 0, size_t last = SIZE_MAX) {
  int64_t n = first == 0 ? input_bytes(profile, batch) : 0;
  for (size_t i = first; i < profile.layers.size() && i < last; ++i) n += profile.layer_at(i, batch).output_bytes;
  return n;
}

// Optimizer state as a share of the parameters (0 when the profile did not measure it).
double state_per_param_byte(const ModelProfile& profile) {
  const int64_t p = profile.param_bytes();
  return p > 0 ? static_cast<double>(profile.optimizer_state_bytes) / static_cast<double>(p) : 0.0;
}

// Buckets as the reducer forms them (dp/bucket_plan.cpp), a layer's parameters taken as
// one: in reverse layer order, a layer joins the open bucket while the bucket stays
// within its cap (the first bucket's cap is min(1, bucket_mb) MiB, as `loom train` sets
// it), else opens a new one. Returns, per bucket, its bytes and the index of its earliest
// layer (its gradients are all ready once that layer's backward is done).
struct Bucket {
  int64_t bytes = 0;
  size_t first_layer = 0;
};
std::vector<Bucket> buckets_of(const Layers& l, double bucket_mb) {
  const auto cap = static_cast<int64_t>(bucket_mb * kMiB);
  const auto first_cap = static_cast<int64_t>(std::min(1.0, bucket_mb) * kMiB);
  std::vector<Bucket> out;
  for (size_t k = l.param_bytes.size(); k-- > 0;) {
    if (l.param_bytes[k] == 0) continue;
    const int64_t open_cap = out.size() == 1 ? first_cap : cap;  // the open bucket's cap
    if (out.empty() || out.back().bytes + l.param_bytes[k] > open_cap) out.push_back({0, k});
    out.back().bytes += l.param_bytes[k];
    out.back().first_layer = k;
  }
  return out;
}

// Forward, then backward in reverse layer order; each bucket's collective starts when its
// layers' gradients are ready and the previous bucket's is done (one channel). Returns
// the communication not hidden behind backward. Without overlap: all of it.
double exposed_bucket_time(const Layers& l, const std::vector<Bucket>& buckets, bool overlap,
                           const std::function<double(int64_t)>& bucket_s) {
  double total = 0;
  for (const auto& b : buckets) total += bucket_s(b.bytes);
  if (!overlap) return total;
  // ready[k]: the time (from the start of backward) layer k's backward is done.
  std::vector<double> done(l.backward.size(), 0.0);
  double t = 0;
  for (size_t k = l.backward.size(); k-- > 0;) {
    t += l.backward[k];
    done[k] = t;
  }
  double channel = 0;
  for (const auto& b : buckets) channel = std::max(channel, done[b.first_layer]) + bucket_s(b.bytes);
  return std::max(0.0, channel - l.backward_total);
}

// The measured overhead entry of `strategy` nearest in degrees (null when none).
const Overhead* nearest_overhead(const Cluster& c, const std::string& strategy, int workers, int servers, int stages,
                                 int64_t micro) {
  const Overhead* best = nullptr;
  double best_d = 0;
  for (const auto& o : c.overheads) {
    if (o.strategy != strategy) continue;
    const double d = std::abs(o.workers - workers) + std::abs(o.servers - servers) + std::abs(o.stages - stages) +
                     0.01 * std::abs(static_cast<double>(o.micro_batches - micro));
    if (!best || d < best_d) {
      best = &o;
      best_d = d;
    }
  }
  return best;
}

// The per-step cost of `entry`'s strategy and degrees for a model of `tensors` parameter
// tensors: where these degrees were measured on models of different tensor counts (the
// reducer's hooks and copies, the servers' slices go per tensor), linear in the tensors
// through the smallest and the largest count, never below 0; else the entry's own.
double overhead_for_tensors(const Cluster& c, const Overhead& entry, int64_t tensors) {
  const Overhead* lo = nullptr;
  const Overhead* hi = nullptr;
  for (const auto& o : c.overheads) {
    if (o.strategy != entry.strategy || o.workers != entry.workers || o.servers != entry.servers ||
        o.stages != entry.stages || o.micro_batches != entry.micro_batches || o.tensors <= 0) {
      continue;
    }
    if (!lo || o.tensors < lo->tensors) lo = &o;
    if (!hi || o.tensors > hi->tensors) hi = &o;
  }
  if (tensors <= 0 || !lo || lo->tensors == hi->tensors) return entry.seconds;
  // A noisy pair may fall with the tensors: no slope then, not a cost that vanishes.
  const double slope = std::max(0.0, (hi->seconds - lo->seconds) / static_cast<double>(hi->tensors - lo->tensors));
  return std::max(0.0, lo->seconds + slope * static_cast<double>(tensors - lo->tensors));
}

// A pipeline's measured overhead is waiting on messages: as a cost per message, it goes
// into the simulation, where compute hides it where the schedule allows. Per message:
// the nearest entry's residual over the messages on its critical path (the makespan of
// its schedule with no compute and messages of 1). 0 when nothing was measured.
double message_overhead(const Cluster& c, int stages, int64_t micro) {
  const Overhead* o = nearest_overhead(c, "pipeline", 1, 0, stages, micro);
  if (!o || o->stages < 2) return 0.0;
  pipeline::StageCosts unit;
  unit.forward.assign(o->stages, 0.0);
  unit.backward.assign(o->stages, 0.0);
  unit.message = 1.0;
  const double messages =
      pipeline::simulate(pipeline::ScheduleKind::one_f_one_b, static_cast<int>(o->micro_batches), unit).makespan;
  return messages > 0 ? o->seconds / messages : 0.0;
}

// loom's own per-step cost for `plan` from the measured table (plan/overhead.h), added
// to the step: the entry of the same strategy nearest in degrees; a hybrid mesh adds
// what its replicas' allreduce costs over one process (its pipeline's is per message,
// message_overhead). 0 when nothing was measured.
double framework_overhead(const Plan& plan, const Cluster& c, int64_t tensors) {
  const Overhead* single = nearest_overhead(c, "single", 1, 0, 1, 1);
  const double base = single ? overhead_for_tensors(c, *single, tensors) : 0.0;
  if (plan.strategy == "single") return base;
  if (plan.strategy == "allreduce" || plan.strategy == "ps") {
    const Overhead* o = nearest_overhead(c, plan.strategy, plan.workers, plan.servers, 1, 1);
    return o ? overhead_for_tensors(c, *o, tensors) : base;
  }
  if (plan.strategy == "pipeline") return 0.0;
  // hybrid: a stage's replicas reduce its share of the tensors.
  const Overhead* ar = nearest_overhead(c, "allreduce", plan.workers, 0, 1, 1);
  const int64_t stage_tensors = (tensors + plan.stages - 1) / std::max(plan.stages, 1);
  const double stage_base = single ? overhead_for_tensors(c, *single, stage_tensors) : 0.0;
  return std::max(0.0, (ar ? overhead_for_tensors(c, *ar, stage_tensors) : stage_base) - stage_base);
}

void set_dominant(Prediction& p) {
  const std::pair<double, const char*> parts[] = {
      {p.compute_s, "compute"}, {p.communication_s, "communication"}, {p.bubble_s, "bubble"}, {p.server_s, "server"}};
  const auto* best = &parts[0];
  for (const auto& part : parts) {
    if (part.first > best->first) best = &part;
  }
  p.dominant = best->second;
  if (p.slowdown > 1.05) p.dominant += fmt::format(" (cores shared: x{:.2f})", p.slowdown);
}

void finish(Prediction& p, const Job& job, int processes, const Cluster& c) {
  p.samples_per_s = p.step_s > 0 ? static_cast<double>(job.batch_size) / p.step_s : 0.0;
  const int64_t limit = c.memory_per_process(per_node(processes, c));
  p.fits = limit <= 0 || p.memory_bytes <= limit;
  set_dominant(p);
}

Prediction predict_single(const Job& job, const ModelProfile& profile, const Cluster& c) {
  Prediction p;
  p.slowdown = c.slowdown(1, job.threads);
  p.compute_s = profile.step_at(job.batch_size) * p.slowdown / c.speed(0);
  p.step_s = p.compute_s;
  const auto params = profile.param_bytes();
  p.memory_bytes =
      c.process_base_bytes + 2 * params + profile.optimizer_state_bytes + activation_bytes(profile, job.batch_size);
  return p;
}

// `total` rows over `n` workers so that the longest compute_of(worker, rows) is smallest:
// each row, one at a time, to the worker whose time with it is smallest (every worker
// keeps at least one row, as the proportional partitioner requires).
std::vector<int64_t> balanced_rows(int64_t total, int n, const std::function<double(int, int64_t)>& compute_of) {
  LOOM_CHECK(n >= 1 && total >= n, ConfigError, "plan: {} rows cannot give each of {} workers one", total, n);
  std::vector<int64_t> rows(n, 1);
  std::vector<double> next(n);  // compute_of(r, rows[r] + 1)
  for (int r = 0; r < n; ++r) next[r] = compute_of(r, 2);
  for (int64_t given = n; given < total; ++given) {
    const auto best = static_cast<int>(std::min_element(next.begin(), next.end()) - next.begin());
    ++rows[best];
    next[best] = compute_of(best, rows[best] + 1);
  }
  return rows;
}

Prediction predict_allreduce(const Plan& plan, const Job& job, const ModelProfile& profile, const Cluster& c) {
  Prediction p;
  const int n = plan.workers;
  p.slowdown = c.slowdown(per_node(n, c), job.threads);
  // Each worker's rows: equal, or with --shard-weights auto where the trainer's
  // re-weighting settles: its weights are each rank's rows per second of forward and
  // backward (trainer.cpp), whose fixed point has equal forward + backward times. The
  // step waits for the worker whose compute takes longest.
  std::vector<double> speeds;
  for (int r = 0; r < n; ++r) speeds.push_back(c.speed(r));
  const auto compute_of = [&](int r, int64_t rows) {
    return (profile.step_at(std::max<int64_t>(rows, 1)) - profile.optimizer_s) / speeds[r];
  };
  const std::vector<int64_t> rows = plan.shard_weights_auto ? balanced_rows(job.batch_size, n, compute_of)
                                                            : std::vector<int64_t>(n, ceil_div(job.batch_size, n));
  int slowest = 0;
  int64_t b = 0;
  for (int r = 0; r < n; ++r) {
    b = std::max(b, rows[r]);
    if (compute_of(r, rows[r]) > compute_of(slowest, rows[slowest])) slowest = r;
  }
  const double slow = p.slowdown / speeds[slowest];
  const Layers l = layers_at(profile, std::max<int64_t>(rows[slowest], 1), slow);
  const double optimizer = profile.optimizer_s * slow / (plan.zero > 0 ? n : 1);
  p.compute_s = l.forward_total + l.backward_total + optimizer;
  const bool overlap = can_overlap(per_node(n, c), job.threads, c);
  const auto buckets = buckets_of(l, job.bucket_mb);
  const int64_t params = profile.param_bytes();
  std::function<double(int64_t)> bucket_s = [&](int64_t bytes) { return c.allreduce_s(n, bytes); };
  // Stage 2 reduce-scatters each bucket: half of the pair (ring: (N-1)/N of the bytes once).
  if (plan.zero == 2) bucket_s = [&](int64_t bytes) { return 0.5 * c.reduce_scatter_all_gather_s(n, bytes); };
  p.communication_s = exposed_bucket_time(l, buckets, overlap, bucket_s);
  // ZeRO: the updated ranges are all-gathered after the step, in one call (exposed).
  if (plan.zero > 0) p.communication_s += 0.5 * c.reduce_scatter_all_gather_s(n, params);
  p.step_s = p.compute_s + p.communication_s;
  // Memory: parameters, gradients, the reducer's flat buckets (all of them in stage 0 and
  // 1; two in flight in stage 2), optimizer state (1/N from stage 1), activations.
  int64_t largest_bucket = 0;
  for (const auto& bk : buckets) largest_bucket = std::max(largest_bucket, bk.bytes);
  const int64_t grads = plan.zero == 2 ? ceil_div(params, n) + 2 * largest_bucket : 2 * params;
  const int64_t state = plan.zero > 0 ? ceil_div(profile.optimizer_state_bytes, n) : profile.optimizer_state_bytes;
  p.memory_bytes = c.process_base_bytes + params + grads + state + activation_bytes(profile, b);
  return p;
}

Prediction predict_ps(const Plan& plan, const Job& job, const ModelProfile& profile, const Cluster& c,
                      double framework) {
  Prediction p;
  const int w = plan.workers, s = plan.servers;
  const int64_t b = ceil_div(job.batch_size, w);
  // Servers wait on the network most of the time: the workers count as the busy ones (a
  // server's work is in the measured round; counting servers as busy underpredicted
  // 2 x 2 by 45-50% on this machine).
  p.slowdown = c.slowdown(per_node(w, c), job.threads);
  const int64_t params = profile.param_bytes();
  // Workers are ranks 0..W-1, servers the last S. Sync: the step waits for the slowest
  // worker. Async: workers do not wait for one another, and the rate loom train reports
  // is rank 0's (global batch over its own cycle), so rank 0's speed.
  const double worker_speed = plan.consistency == "sync" ? c.slowest(w) : c.speed(0);
  const double worker_compute = (profile.step_at(b) - profile.optimizer_s) * p.slowdown / worker_speed;
  const double round = c.ps_round_s(w, s, params);
  // Each server applies the optimizer to its 1/S of the parameters: once per step when
  // synchronous, once per push when not; at the slowest server's speed.
  double server_speed = c.speed(w);
  for (int r = w + 1; r < w + s; ++r) server_speed = std::min(server_speed, c.speed(r));
  const double server_step = profile.optimizer_s * c.slowdown(per_node(w + s, c), 1) / s / server_speed;
  p.compute_s = worker_compute;
  p.communication_s = round;
  if (plan.consistency == "sync") {
    p.server_s = server_step;
    p.step_s = worker_compute + round + server_step + framework;
  } else {
    // Asynchronous: no barrier; a worker's cycle is its compute and its round, unless
    // the servers cannot keep up with w pushes per cycle.
    const double cycle = worker_compute + round + framework;
    const double servers_busy = w * server_step;
    p.server_s = std::max(0.0, servers_busy - cycle);
    p.step_s = std::max(cycle, servers_busy);
    p.note = "asynchronous: updates from stale parameters, not equivalent to single-process training";
  }
  const int64_t worker_mem = c.process_base_bytes + 3 * params + activation_bytes(profile, b);
  const int64_t server_mem =
      c.process_base_bytes + 2 * ceil_div(params, s) + ceil_div(profile.optimizer_state_bytes, s);
  p.memory_bytes = std::max(worker_mem, server_mem);
  return p;
}

// One pipeline of `plan.stages` stages over `rows` rows per step, with `busy` processes
// on the node. Sets compute/bubble/communication, returns the step without data-parallel
// reduction; `stage_params` receives each stage's parameter bytes and `last_backward`
// each stage's backward of one micro-batch.
double predict_pipeline_step(const Plan& plan, const Job& job, const ModelProfile& profile, const Cluster& c,
                             int64_t rows, int busy, Prediction& p, std::vector<int64_t>& stage_params,
                             std::vector<double>& stage_backward) {
  const int P = plan.stages;
  const auto M = static_cast<int>(plan.micro_batches);
  const int64_t m = ceil_div(rows, M);
  p.slowdown = c.slowdown(busy, job.threads);
  const Layers l = layers_at(profile, m, p.slowdown);
  const auto offsets = pipeline::stage_offsets(plan.split);
  pipeline::StageCosts costs;
  double message = 0;
  stage_params.assign(P, 0);
  std::vector<int64_t> stash(P, 0);
  double stage_optimizer = 0;
  const int64_t params = profile.param_bytes();
  for (int s = 0; s < P; ++s) {
    double f = 0, bw = 0;
    for (int64_t k = offsets[s]; k < offsets[s + 1]; ++k) {
      f += l.forward[k];
      bw += l.backward[k];
      stage_params[s] += l.param_bytes[k];
    }
    // A pipeline's stage s is rank s; a mesh's stage s is ranks d * P + s of replicas
    // d = 0..dp-1 (hybrid/mesh.cpp), in step with one another: the slowest of them.
    double speed = c.speed(s);
    for (int d = 1; plan.strategy == "hybrid" && d < plan.workers; ++d) speed = std::min(speed, c.speed(d * P + s));
    costs.forward.push_back(f / speed);
    costs.backward.push_back(bw / speed);
    if (s + 1 < P) {
      message = std::max(message, c.p2p_s(l.output_bytes[offsets[s + 1] - 1], one_node(busy, c), P));
    }
    const double share = params > 0 ? static_cast<double>(stage_params[s]) / static_cast<double>(params) : 0.0;
    stage_optimizer = std::max(stage_optimizer, profile.optimizer_s * p.slowdown * share / speed);
  }
  costs.message = message + message_overhead(c, P, M);
  stage_backward = costs.backward;
  const auto kind = pipeline::parse_schedule(plan.schedule);
  const pipeline::SimulatedRun run = pipeline::simulate(kind, M, costs);
  double busiest = 0;
  for (int s = 0; s < P; ++s) busiest = std::max(busiest, M * (costs.forward[s] + costs.backward[s]));
  p.bubble_s = std::max(0.0, run.makespan - busiest);
  p.communication_s = 2.0 * message * M;  // on the critical path of some micro-batch; shown, inside the makespan
  p.compute_s = busiest + stage_optimizer;
  // Memory: the largest stage's parameters, gradients, state and stashed activations
  // (GPipe: all M micro-batches; 1F1B: at most P - s on stage s).
  const double state_ratio = state_per_param_byte(profile);
  int64_t worst = 0;
  for (int s = 0; s < P; ++s) {
    const int64_t stashed = kind == pipeline::ScheduleKind::gpipe ? M : std::min<int64_t>(P - s, M);
    const int64_t acts = stashed * activation_bytes(profile, m, offsets[s], offsets[s + 1]);
    const auto state = static_cast<int64_t>(state_ratio * static_cast<double>(stage_params[s]));
    worst = std::max(worst, 2 * stage_params[s] + state + acts);
  }
  p.memory_bytes = c.process_base_bytes + worst;
  return run.makespan + stage_optimizer;
}

Prediction predict_pipeline(const Plan& plan, const Job& job, const ModelProfile& profile, const Cluster& c) {
  Prediction p;
  std::vector<int64_t> stage_params;
  std::vector<double> stage_backward;
  p.step_s = predict_pipeline_step(plan, job, profile, c, job.batch_size, per_node(plan.stages, c), p, stage_params,
                                   stage_backward);
  return p;
}

Prediction predict_hybrid(const Plan& plan, const Job& job, const ModelProfile& profile, const Cluster& c) {
  Prediction p;
  const int dp = plan.workers;
  const int busy = per_node(dp * plan.stages, c);
  std::vector<int64_t> stage_params;
  std::vector<double> stage_backward;
  const double pipe =
      predict_pipeline_step(plan, job, profile, c, ceil_div(job.batch_size, dp), busy, p, stage_params, stage_backward);
  // Each stage's replicas allreduce its gradients during the backward of the last
  // micro-batch: hidden behind that backward when a core is spare, else added.
  const bool overlap = can_overlap(busy, job.threads, c);
  double exposed = 0;
  for (size_t s = 0; s < stage_params.size(); ++s) {
    const double ar = c.allreduce_s(dp, stage_params[s]);
    exposed = std::max(exposed, overlap ? std::max(0.0, ar - stage_backward[s]) : ar);
  }
  p.communication_s += exposed;
  p.step_s = pipe + exposed;
  int64_t largest = 0;
  for (int64_t sp : stage_params) largest = std::max(largest, sp);
  p.memory_bytes += largest;  // the stage's flat allreduce buckets
  return p;
}

// Degrees worth trying up to `max`: every value to 16, then powers of two (and max).
std::vector<int> degrees_upto(int from, int max) {
  std::vector<int> out;
  for (int d = from; d <= max; ++d) {
    if (d <= 16 || (d & (d - 1)) == 0 || d == max) out.push_back(d);
  }
  return out;
}

bool wanted(const Job& job, const std::string& strategy) {
  return job.strategies.empty() ||
         std::find(job.strategies.begin(), job.strategies.end(), strategy) != job.strategies.end();
}

// The split of `layers` into `stages` balanced by the profile's forward + backward at the
// micro-batch (what --balance time would choose, fixed in the plan as --split).
std::vector<int64_t> time_split(const ModelProfile& profile, int stages, int64_t micro_rows) {
  std::vector<double> costs;
  for (size_t i = 0; i < profile.layers.size(); ++i) {
    const LayerTimes t = profile.layer_at(i, micro_rows);
    costs.push_back(t.forward_s + t.backward_s);
  }
  return pipeline::balanced_split(costs, stages);
}

void add_pipelines(std::vector<Plan>& out, const ModelProfile& profile, const std::string& strategy, int dp,
                   int max_stages, int64_t rows) {
  const auto layers = static_cast<int>(profile.layers.size());
  for (int P : degrees_upto(2, std::min(layers, max_stages))) {
    for (int64_t M : {int64_t{P}, int64_t{2} * P, int64_t{4} * P}) {
      if (M > rows) continue;
      for (const char* schedule : {"gpipe", "1f1b"}) {
        Plan p = Plan::pipeline(P, M, schedule, time_split(profile, P, ceil_div(rows, M)));
        p.strategy = strategy;
        p.workers = dp;
        out.push_back(p);
      }
    }
  }
}

}  // namespace

Plan Plan::allreduce(int workers, int zero) {
  Plan p;
  p.strategy = "allreduce";
  p.workers = workers;
  p.zero = zero;
  return p;
}

Plan Plan::ps(int workers, int servers, const std::string& consistency) {
  Plan p;
  p.strategy = "ps";
  p.workers = workers;
  p.servers = servers;
  p.consistency = consistency;
  return p;
}

Plan Plan::pipeline(int stages, int64_t micro_batches, const std::string& schedule, std::vector<int64_t> split) {
  Plan p;
  p.strategy = "pipeline";
  p.stages = stages;
  p.micro_batches = micro_batches;
  p.schedule = schedule;
  p.split = std::move(split);
  return p;
}

int Plan::processes() const {
  if (strategy == "single") return 1;
  if (strategy == "allreduce") return workers;
  if (strategy == "ps") return workers + servers;
  if (strategy == "pipeline") return stages;
  return workers * stages;  // hybrid
}

std::vector<std::string> Plan::args(const Job& job) const {
  std::vector<std::string> a{"--strategy", strategy};
  auto add = [&a](const char* flag, const std::string& value) {
    a.emplace_back(flag);
    a.push_back(value);
  };
  if (strategy == "allreduce") {
    add("--nproc", std::to_string(workers));
    add("--zero", std::to_string(zero));
    if (shard_weights_auto) {
      add("--partition", "proportional");
      add("--shard-weights", "auto");
    }
  } else if (strategy == "ps") {
    add("--nproc", std::to_string(workers));
    add("--servers", std::to_string(servers));
    add("--consistency", consistency);
    if (consistency == "ssp") add("--staleness", std::to_string(job.staleness));
  } else if (strategy == "pipeline" || strategy == "hybrid") {
    if (strategy == "hybrid") {
      add("--dp", std::to_string(workers));
      add("--pp", std::to_string(stages));
    }
    add("--nproc", std::to_string(processes()));
    add("--micro-batches", std::to_string(micro_batches));
    add("--schedule", schedule);
    add("--split", fmt::format("{}", fmt::join(split, ",")));
  }
  return a;
}

std::string Plan::degrees() const {
  if (strategy == "single") return "1 process";
  if (strategy == "allreduce") {
    return fmt::format("N={}{}{}", workers, zero > 0 ? fmt::format(" zero={}", zero) : "",
                       shard_weights_auto ? " shard-weights=auto" : "");
  }
  if (strategy == "ps") return fmt::format("W={} S={} {}", workers, servers, consistency);
  const std::string pipe = fmt::format("P={} M={} {} split={}", stages, micro_batches, schedule, fmt::join(split, ","));
  return strategy == "hybrid" ? fmt::format("dp={} ", workers) + pipe : pipe;
}

std::vector<Plan> candidates(const Job& job, const ModelProfile& profile, const Cluster& cluster) {
  LOOM_CHECK(job.batch_size >= 1 && job.threads >= 1 && job.bucket_mb > 0, ConfigError,
             "plan: the batch ({}), the threads ({}) and --bucket-mb ({}) must be positive", job.batch_size,
             job.threads, job.bucket_mb);
  const int max = std::min(std::max(1, job.max_processes), cluster.max_processes());
  std::vector<Plan> out;
  if (wanted(job, "single")) out.push_back(Plan{});
  if (wanted(job, "allreduce")) {
    for (int n : degrees_upto(2, max)) {
      if (job.batch_size % n != 0) continue;  // loom train splits the batch evenly (strided partition)
      for (int zero : {0, 1, 2}) out.push_back(Plan::allreduce(n, zero));
      // Workers of different speeds (beyond calibration's noise): rows in proportion to
      // the measured rates.
      if (cluster.slowest(n) < cluster.fastest(n) * (1 - Cluster::kSpeedTolerance)) {
        Plan p = Plan::allreduce(n);
        p.shard_weights_auto = true;
        out.push_back(p);
      }
    }
  }
  if (wanted(job, "ps")) {
    for (int s : degrees_upto(1, max - 1)) {
      for (int w : degrees_upto(1, max - s)) {
        if (job.batch_size % w != 0) continue;
        for (const char* consistency : {"sync", "async"}) out.push_back(Plan::ps(w, s, consistency));
      }
    }
  }
  if (wanted(job, "pipeline")) add_pipelines(out, profile, "pipeline", 1, max, job.batch_size);
  if (wanted(job, "hybrid")) {
    for (int dp : degrees_upto(2, max / 2)) {
      if (job.batch_size % dp != 0) continue;
      add_pipelines(out, profile, "hybrid", dp, max / dp, ceil_div(job.batch_size, dp));
    }
  }
  return out;
}

Prediction predict(const Plan& plan, const Job& job, const ModelProfile& profile, const Cluster& cluster) {
  LOOM_CHECK(!profile.layers.empty(), ConfigError, "plan: the profile of {} has no layers", profile.model);
  if (plan.strategy == "pipeline" || plan.strategy == "hybrid") {
    int64_t layers = 0;
    for (int64_t n : plan.split) {
      LOOM_CHECK(n >= 1, ConfigError, "plan: every stage needs a layer, split {}", fmt::join(plan.split, ","));
      layers += n;
    }
    LOOM_CHECK(static_cast<int>(plan.split.size()) == plan.stages &&
                   layers == static_cast<int64_t>(profile.layers.size()) && plan.micro_batches >= 1,
               ConfigError, "plan: split {} is not {} stages of the {} layers, or no micro-batch",
               fmt::join(plan.split, ","), plan.stages, profile.layers.size());
  }
  Prediction p;
  if (plan.strategy == "single") {
    p = predict_single(job, profile, cluster);
  } else if (plan.strategy == "allreduce") {
    p = predict_allreduce(plan, job, profile, cluster);
  } else if (plan.strategy == "ps") {
    p = predict_ps(plan, job, profile, cluster, framework_overhead(plan, cluster, profile.param_tensors));
  } else if (plan.strategy == "pipeline") {
    p = predict_pipeline(plan, job, profile, cluster);
  } else if (plan.strategy == "hybrid") {
    p = predict_hybrid(plan, job, profile, cluster);
  } else {
    LOOM_THROW(ConfigError, "plan: unknown strategy '{}'", plan.strategy);
  }
  // loom's own per-step cost (measured, plan/overhead.h): added, never overlapped (the
  // ps prediction added it to the workers' cycle itself).
  p.framework_s = framework_overhead(plan, cluster, profile.param_tensors);
  if (plan.strategy != "ps") p.step_s += p.framework_s;
  finish(p, job, plan.processes(), cluster);
  return p;
}

std::vector<RankedPlan> rank(const Job& job, const ModelProfile& profile, const Cluster& cluster) {
  std::vector<RankedPlan> out;
  for (auto& plan : candidates(job, profile, cluster)) {
    Prediction p = predict(plan, job, profile, cluster);
    out.push_back({std::move(plan), std::move(p)});
  }
  std::stable_sort(out.begin(), out.end(), [](const RankedPlan& a, const RankedPlan& b) {
    if (a.prediction.fits != b.prediction.fits) return a.prediction.fits;
    return a.prediction.samples_per_s > b.prediction.samples_per_s;
  });
  return out;
}

}  // namespace loom::plan
