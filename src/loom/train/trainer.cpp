#include "loom/train/trainer.h"

#include <torch/torch.h>

#include <unistd.h>
#include <algorithm>
#include <chrono>
#include <numeric>

#include "loom/comm/context.h"
#include "loom/core/atomic_file.h"
#include "loom/core/dist_env.h"
#include "loom/core/error.h"
#include "loom/core/log.h"
#include "loom/data/dataset.h"
#include "loom/data/partitioner.h"
#include "loom/models/registry.h"
#include "loom/models/scripted.h"
#include "loom/strategies/factory.h"
#include "loom/trace/tracer.h"
#include "loom/train/checkpointer.h"
#include "loom/train/evaluate.h"
#include "loom/train/fault_injection.h"
#include "loom/train/model_for.h"
#include "loom/train/model_io.h"
#include "loom/train/progress.h"
#include "loom/train/strategy_options.h"

namespace loom::train {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

void set_threads(int threads) {
  at::set_num_threads(threads);
  set_blas_threads(threads);  // OpenBLAS keeps its own pool (core/process.h)
  try {
    at::set_num_interop_threads(1);  // inter-op parallelism is unused by training steps
  } catch (const std::exception&) {
    // Already set (e.g. a second Trainer in one process); harmless.
  }
}

data::DataOptions data_options(const TrainConfig& c, const std::string& name) {
  data::DataOptions d;
  d.name = name;
  d.dir = c.data_dir;
  d.synthetic.num_samples = c.synthetic_samples;
  d.synthetic.seed = static_cast<uint64_t>(c.seed);
  d.target_column = c.target_column;
  d.allow_nan = c.allow_nan;
  return d;
}

data::TargetKind target_kind(models::LossKind loss) {
  return models::takes_class_targets(loss) ? data::TargetKind::classes : data::TargetKind::values;
}

// The evaluation set (rank 0 only): --eval-data, else the built-in set's own test split
// (a file set brings one split only: without --eval-data it is not evaluated).
data::Dataset load_eval_set(const TrainConfig& c, models::LossKind loss) {
  if (!c.eval_data.empty()) {
    return data::with_targets(data::load_dataset(data_options(c, c.eval_data), data::Split::test), target_kind(loss));
  }
  return data::with_targets(data::load_dataset(data_options(c, c.data), data::Split::test), target_kind(loss));
}

// The model: a TorchScript file, or a built-in model shaped by the training set.
struct LoadedModel {
  torch::nn::Sequential model{nullptr};
  models::ScriptedModel scripted;  // script set when --model is a file
};

LoadedModel load_model(const TrainConfig& c, const data::Dataset& train_set, models::LossKind loss) {
  LoadedModel out;
  if (models::is_model_file(c.model)) {
    out.scripted = models::load_scripted(c.model);
    out.model = out.scripted.model;
    check_cuttable(c, out.scripted);
    return out;
  }
  models::ModelOptions mopts;
  mopts.sample_shape = train_set.sample_shape;
  mopts.num_classes = models::takes_class_targets(loss) ? train_set.num_classes : train_set.target_width();
  mopts.seed = static_cast<uint64_t>(c.seed);
  mopts.width = c.width;
  mopts.depth = c.depth;
  out.model = models::make_model(c.model, mopts);
  return out;
}

}  // namespace

ModelForConfig model_for(const TrainConfig& c) {
  const models::LossKind loss = models::parse_loss(c.loss);
  const data::Dataset train_set =
      data::with_targets(data::load_dataset(data_options(c, c.data), data::Split::train), target_kind(loss));
  torch::manual_seed(static_cast<uint64_t>(c.seed));
  LoadedModel loaded = load_model(c, train_set, loss);
  return {loaded.model, loaded.scripted, train_set.sample_shape};
}

namespace {

data::PartitionOptions partition_options(const TrainConfig& c, const strategies::DataSlot& slot, int64_t num_samples) {
  data::PartitionOptions p;
  p.scheme = data::parse_scheme(c.partition);
  p.world_size = slot.world_size;
  p.num_samples = num_samples;
  p.batch_size = c.batch_size;
  p.seed = static_cast<uint64_t>(c.seed);
  p.drop_last = c.drop_last;
  // "auto" starts from equal weights; the data-parallel strategy re-weights from measurements.
  if (c.shard_weights != "auto") p.weights = data::parse_weights(c.shard_weights);
  return p;
}

// --shard-weights auto: after kFirstReweight steps, then every kReweightEvery steps, each
// data rank's measured throughput (samples per second of its own compute, waiting
// excluded) becomes its weight. All ranks compute the weights from the same gathered
// numbers, so they agree exactly.
class AutoReweighting {
 public:
  explicit AutoReweighting(bool enabled) : enabled_(enabled) {}

  // After step t (0-based) on every rank: collective on the steps that re-weight.
  void after_step(int64_t t, const strategies::StepOutput& out, strategies::Strategy& strategy,
                  data::Partitioner& partitioner, int64_t epoch, bool leader) {
    if (!enabled_) return;
    compute_s_ += out.compute_s;
    samples_ += out.samples;
    if (t + 1 != kFirstReweight && (t + 1) % kReweightEvery != 0) return;
    const auto rates = strategy.gather_over_data_ranks(compute_s_ > 0 ? samples_ / compute_s_ : 0);
    bool usable = true;
    for (double r : rates) usable = usable && std::isfinite(r) && r > 0;
    if (usable) {
      try {
        partitioner.set_weights(rates);
      } catch (const ConfigError&) {
        // The batch is too small to give every worker a sample at these rates: keep the
        // previous weights (every rank decides the same way).
      }
      if (leader) {
        log::debug("--shard-weights auto: throughput {} -> parts {}", fmt::join(rates, ","),
                   fmt::join(partitioner.part_sizes(epoch, 0), ","));
      }
    }
    compute_s_ = 0;
    samples_ = 0;
  }

 private:
  static constexpr int64_t kFirstReweight = 5;
  static constexpr int64_t kReweightEvery = 20;
  bool enabled_;
  double compute_s_ = 0;
  int64_t samples_ = 0;
};

// The steps between two metric records: their loss (each data rank's mean weighted by
// its share; summed over the data ranks when the window closes), time and samples, and
// the run of steps skipped in a row (--skip-nonfinite).
class StepWindow {
 public:
  StepWindow(const TrainConfig& c, bool leader) : c_(c), leader_(leader) {}

  // One step's result; throws TrainingError when the loss is not finite, or when more
  // than --skip-nonfinite steps in a row were skipped.
  void add(int64_t t, int64_t epoch, const strategies::StepOutput& out, double step_s, int64_t global_batch,
           bool reads_data, Summary& summary) {
    train_s_ += step_s;
    window_s_ += step_s;
    samples_ += global_batch;
    window_samples_ += global_batch;
    if (out.skipped) {
      // Every rank skipped this step alike (strategies/nonfinite.h); its loss is not averaged in.
      ++summary.skipped_steps;
      ++window_skipped_;
      LOOM_CHECK(++skipped_in_a_row_ <= c_.skip_nonfinite, TrainingError,
                 "the gradients were not finite for {} steps in a row (steps {} to {}, epoch {}); "
                 "--skip-nonfinite {} allows {}; lower --lr or check the data",
                 skipped_in_a_row_, t + 2 - skipped_in_a_row_, t + 1, epoch + 1, c_.skip_nonfinite, c_.skip_nonfinite);
      if (leader_) {
        log::warn("step {}: gradients not finite (loss {}): skipped, no update ({} in a row; --skip-nonfinite {})",
                  t + 1, out.loss, skipped_in_a_row_, c_.skip_nonfinite);
      }
      return;
    }
    skipped_in_a_row_ = 0;
    window_loss_ += out.loss * (reads_data ? static_cast<double>(out.samples) / global_batch : 0.0);
    ++window_steps_;
    if (!std::isfinite(out.loss) && reads_data) {
      LOOM_THROW(TrainingError,
                 "the training loss became {} at step {} (epoch {}); lower --lr, check the data, or skip such "
                 "steps with --skip-nonfinite N",
                 out.loss, t + 1, epoch + 1);
    }
  }

  // --time-limit: whether every data rank stops after step t. Every data rank must stop
  // at the same step: the ranks agree through the same collective as the loss
  // (strategies without one, like asynchronous parameter servers, decide per worker).
  bool time_is_up(int64_t t, strategies::Strategy& strategy) const {
    if ((t + 1) % c_.log_every != 0 || c_.time_limit <= 0) return false;
    const bool up = strategy.sum_over_data_ranks(train_s_ >= c_.time_limit ? 1.0 : 0.0) > 0;
    if (up && leader_) log::info("--time-limit {} s reached after {} steps", c_.time_limit, t + 1);
    return up;
  }

  // Closes the window on its steps (and on the last): collective.
  void maybe_record(int64_t t, int64_t epoch, bool last, strategies::Strategy& strategy, MetricsWriter& metrics) {
    if ((t + 1) % c_.log_every != 0 && !last) return;
    // The global mean loss (a window of only skipped steps has none: NaN, written as null).
    last_loss_ = strategy.sum_over_data_ranks(window_loss_) / static_cast<double>(window_steps_);
    const double sps = window_s_ > 0 ? window_samples_ / window_s_ : 0;
    const int64_t steps_in_window = window_steps_ + window_skipped_;
    metrics.write(StepRecord{t + 1, epoch, last_loss_, sps, c_.lr, 1e3 * window_s_ / steps_in_window});
    window_loss_ = window_s_ = window_samples_ = 0;
    window_steps_ = window_skipped_ = 0;
  }

  double train_s() const { return train_s_; }
  int64_t samples() const { return samples_; }
  double samples_per_s() const { return train_s_ > 0 ? samples_ / train_s_ : 0; }
  double last_loss() const { return last_loss_; }

 private:
  const TrainConfig& c_;
  bool leader_;
  double train_s_ = 0, window_loss_ = 0, window_s_ = 0, window_samples_ = 0;
  int64_t window_steps_ = 0, samples_ = 0, skipped_in_a_row_ = 0, window_skipped_ = 0;
  double last_loss_ = std::nan("");
};

// --record-indices DIR: the sample indices this data rank trained on, step by step,
// written as one rank of `loom partition` prints them: {"rank":r,"steps":[[...],...]}.
class IndexRecorder {
 public:
  explicit IndexRecorder(std::string dir) : dir_(std::move(dir)) {}
  void add(const std::vector<int64_t>& indices) {
    if (!dir_.empty()) steps_.push_back(indices);
  }
  void write(int data_rank) const {
    if (dir_.empty()) return;
    std::string json = fmt::format("{{\"rank\":{},\"steps\":[", data_rank);
    for (size_t i = 0; i < steps_.size(); ++i) json += fmt::format("{}[{}]", i ? "," : "", fmt::join(steps_[i], ","));
    write_file_atomic(dir_ + "/rank-" + std::to_string(data_rank) + ".json", json + "]}\n");
  }

 private:
  std::string dir_;
  std::vector<std::vector<int64_t>> steps_;
};

// Disk reads of a memory-mapped (npy:) training set, overlapped with compute. When one
// epoch of this worker's rows lies on at least half of the file's pages and the file
// takes at most a quarter of this machine's memory, the whole file is read ahead at
// start, sequentially (0.4 s for 188 MB here, against ~2.5 ms per step
// of 64 rows read at random); otherwise, after each step's gather, the next step's rows.
class ReadAhead {
 public:
  ReadAhead(const data::Dataset& set, data::Partitioner& partitioner, const strategies::DataSlot& slot,
            int64_t first_step, int64_t total_steps)
      : set_(set), partitioner_(partitioner), rank_(slot.rank), total_steps_(total_steps) {
    if (!set.memory_mapped || !slot.reads_data) return;
    const int64_t per_epoch = partitioner.steps_per_epoch();
    std::vector<int64_t> rows;
    for (int64_t t = first_step; t < std::min(total_steps, first_step + per_epoch); ++t) {
      const auto step_rows = partitioner.indices(rank_, t / per_epoch, t % per_epoch);
      rows.insert(rows.end(), step_rows.begin(), step_rows.end());
    }
    const double file_bytes = static_cast<double>(set.inputs.numel()) * set.inputs.element_size();
    const double memory_bytes = static_cast<double>(::sysconf(_SC_PHYS_PAGES)) * ::sysconf(_SC_PAGESIZE);
    if (data::page_coverage(set, rows) >= 0.5 && file_bytes <= memory_bytes / 4) {
      data::prefetch_all(set);
    } else {
      per_step_ = true;
    }
  }
  void after_gather(int64_t step) {
    if (!per_step_ || step + 1 >= total_steps_) return;
    const int64_t per_epoch = partitioner_.steps_per_epoch();
    data::prefetch(set_, partitioner_.indices(rank_, (step + 1) / per_epoch, (step + 1) % per_epoch));
  }

 private:
  const data::Dataset& set_;
  data::Partitioner& partitioner_;
  int rank_;
  int64_t total_steps_;
  bool per_step_ = false;
};

// --save on rank 0. A model with a NaN or an infinity is not written unless asked for
// (--save-nonfinite): returns the error to raise once the collective finish() is done
// (so the other ranks end cleanly and the job ends with this one line), or "".
std::string save_final_model(const TrainConfig& c, torch::nn::Sequential& full) {
  if (c.save.empty()) return "";
  const StateDict state = state_dict(*full);
  const std::string bad = c.save_nonfinite ? "" : describe_nonfinite(state);
  if (!bad.empty()) {
    return fmt::format(
        "--save {}: nothing written: the final model is not finite ({}); pass --save-nonfinite to "
        "write it anyway",
        c.save, bad);
  }
  save_model_file(c.save, state);
  log::info("saved the model to {}", c.save);
  return "";
}

// --trace: one file for the whole job, every rank's events gathered on rank 0 through the store.
void write_job_trace(const trace::Tracer& tracer, comm::Context* context, const std::string& path) {
  if (!tracer.enabled()) return;
  std::vector<std::string> bodies{tracer.events_json()};
  const int rank = context ? context->rank() : 0;
  if (context && context->world_size() > 1) {
    context->store_set("loom/trace/" + std::to_string(rank), bodies[0]);
    if (rank == 0) {
      for (int r = 1; r < context->world_size(); ++r)
        bodies.push_back(context->store_get("loom/trace/" + std::to_string(r)));
    }
  }
  if (rank == 0) trace::Tracer::write_file(path, bodies);
}

}  // namespace

Trainer::Trainer(TrainConfig config, std::shared_ptr<comm::Context> context, JobEnvironment environment)
    : Trainer(std::move(config), std::move(context), nullptr, std::move(environment)) {}

Trainer::Trainer(TrainConfig config, std::shared_ptr<comm::Context> context,
                 std::unique_ptr<strategies::Strategy> strategy, JobEnvironment environment)
    : config_(std::move(config)),
      context_(std::move(context)),
      strategy_(std::move(strategy)),
      environment_(std::move(environment)) {
  validate(config_);
}

Trainer::~Trainer() = default;

Summary Trainer::run() {
  const auto wall_start = Clock::now();
  const TrainConfig& c = config_;
  const int rank = context_ ? context_->rank() : 0;
  const int world = context_ ? context_->world_size() : 1;
  const bool leader = rank == 0;
  set_threads(c.threads);

  LOOM_CHECK(c.strategy != "single" || world == 1, ConfigError,
             "--strategy single runs one process, but this job has {} (use --nproc 1)", world);

  // Data: every data rank holds the training set (in memory, or a file mapped into
  // memory); rank 0 also the evaluation set.
  const models::LossKind loss = models::parse_loss(c.loss);
  const data::Dataset train_set =
      data::with_targets(data::load_dataset(data_options(c, c.data), data::Split::train), target_kind(loss));
  const bool evaluates = c.eval && (!c.eval_data.empty() || data::has_test_split(c.data));  // the same on every rank
  const data::Dataset test_set = leader && evaluates ? load_eval_set(c, loss) : data::Dataset{};
  LOOM_CHECK(test_set.size() == 0 || test_set.sample_shape == train_set.sample_shape, DataError,
             "--eval-data {}: its rows have shape {}, but the rows of --data {} have shape {}", test_set.name,
             fmt::join(test_set.sample_shape, "x"), train_set.name, fmt::join(train_set.sample_shape, "x"));
  data::prefetch_all(test_set);  // an evaluation reads every row: a mapped file is read ahead, in the background
  torch::manual_seed(static_cast<uint64_t>(c.seed));  // what a model's own random ops (Dropout) draw from

  if (leader && c.eval && !evaluates)
    log::info("no evaluation: --data {} has no test split (pass --eval-data)", c.data);
  LoadedModel loaded = load_model(c, train_set, loss);
  torch::nn::Sequential model = loaded.model;
  if (!c.init.empty()) {
    load_state_dict(*model, load_model_file(c.init), c.init);
    log::info("initialised the model from {}", c.init);
  }

  // Resuming: the part is read (and checked) before the strategy's setup, because a
  // pipeline must cut the model as the checkpoint did.
  Checkpointer checkpointer(config_, context_);
  std::optional<CheckpointPart> resumed = checkpointer.load_for_resume();
  if (resumed && config_.split.empty() && !resumed->meta.layout.empty()) config_.split = resumed->meta.layout;

  trace::Tracer tracer(rank, !c.trace.empty());
  if (!strategy_) strategy_ = strategies::make_strategy(strategy_options(c, rank, environment_.van));
  strategies::Strategy& strategy = *strategy_;
  strategies::StrategySetup setup;
  setup.model = model;
  setup.optimizer = optimizer_options(c);
  setup.context = context_;
  setup.tracer = &tracer;
  setup.sample_shape = train_set.sample_shape;
  strategy.setup(setup);
  const strategies::DataSlot slot = strategy.data_slot();

  const int64_t n = train_set.size();
  auto partitioner = data::make_partitioner(partition_options(c, slot, n));
  const int64_t steps_per_epoch = partitioner->steps_per_epoch();
  const int64_t total_steps = c.steps > 0 ? c.steps : c.epochs * steps_per_epoch;
  const int64_t epochs = (total_steps + steps_per_epoch - 1) / steps_per_epoch;
  strategies::LocalState local;
  if (checkpointer.enabled()) local = strategy.local_state();  // a strategy without checkpoints fails here
  int64_t first_step = 0;
  if (resumed) {
    checkpointer.restore(*resumed, local, *partitioner);
    first_step = resumed->meta.step;
    resumed.reset();
  }

  MetricsWriter metrics(leader ? c.metrics : "");
  Progress progress(leader ? c.progress : "off", total_steps, steps_per_epoch, epochs, c.log_every);
  if (leader) {
    log::info(
        "training {} on {} ({} samples) with --strategy {}: {} process(es), global batch {}, {} steps/epoch, "
        "{} step(s), {} thread(s) each",
        c.model, c.data, n, c.strategy, world, c.batch_size, steps_per_epoch, total_steps, c.threads);
  }

  Summary summary;
  summary.strategy = c.strategy;
  summary.world_size = world;
  summary.model = c.model;
  summary.data = c.data;
  summary.batch_size = c.batch_size;
  summary.threads = c.threads;
  summary.epochs = epochs;
  summary.loss = models::loss_name(loss);
  summary.predicted_samples_per_s = c.predicted_samples_per_s;
  auto evaluate_now = [&](torch::nn::Sequential& full, int64_t epoch, int64_t step) {
    if (!leader || test_set.size() == 0) return;
    const auto r = evaluate(full, test_set, c.eval_batch_size, loss);
    summary.evaluated = true;
    summary.test_loss = r.loss;
    summary.test_accuracy = r.accuracy;
    summary.test_mse = r.mse;
    metrics.write(EvalRecord{epoch, step, r.loss, r.accuracy, r.mse});
    progress.message(fmt::format(
        "epoch {} {} test loss {:.4f}", epoch + 1,
        r.mse >= 0 ? fmt::format("test mse {:.6f}", r.mse) : fmt::format("test accuracy {:.4f}", r.accuracy), r.loss));
  };

  ReadAhead read_ahead(train_set, *partitioner, slot, first_step, total_steps);
  StepWindow window(c, leader);
  AutoReweighting reweighting(c.shard_weights == "auto" && slot.world_size > 1);
  IndexRecorder recorder(c.record_indices);
  const auto fault = fault_plan_for_attempt(environment_.fault_inject, environment_.restart_count);
  int64_t steps_done = first_step;
  for (int64_t t = first_step; t < total_steps; ++t) {
    maybe_inject_fault(fault, rank, t);  // by the job's rank: every process can be the victim
    const int64_t epoch = t / steps_per_epoch;
    const int64_t in_epoch = t % steps_per_epoch;
    const auto step_start = Clock::now();
    strategies::StepOutput out;
    const auto sizes = partitioner->part_sizes(epoch, in_epoch);
    const int64_t global_batch = std::accumulate(sizes.begin(), sizes.end(), int64_t{0});
    if (slot.reads_data) {
      const std::vector<int64_t> indices = partitioner->indices(slot.rank, epoch, in_epoch);
      recorder.add(indices);
      data::Batch part = data::gather(train_set, indices);
      read_ahead.after_gather(t);
      if (poisons_batch(fault, rank, t)) part.inputs = torch::full_like(part.inputs, std::nan(""));
      const double share = static_cast<double>(sizes[slot.rank]) / global_batch;
      auto span = tracer.span("step", "step");
      out = strategy.step(part, strategies::StepInfo{t, epoch, global_batch, share});
    }
    if (poisons_model_after(fault, rank, t)) {
      torch::NoGradGuard no_grad;
      strategy.local_state().model->parameters().at(0).fill_(std::nan(""));
    }
    const double step_s = seconds_since(step_start);
    reweighting.after_step(t, out, strategy, *partitioner, epoch, leader);
    window.add(t, epoch, out, step_s, global_batch, slot.reads_data, summary);
    const bool last = t + 1 == total_steps || window.time_is_up(t, strategy);
    window.maybe_record(t, epoch, last, strategy, metrics);
    progress.update(t + 1, epoch, out.loss, window.samples_per_s());
    steps_done = t + 1;
    if (checkpointer.enabled() && (steps_done % c.checkpoint_every == 0 || last)) {
      auto span = tracer.span("checkpoint", "checkpoint");
      checkpointer.save(steps_done, strategy, local, *partitioner);
    }
    if (last) break;
    if (in_epoch + 1 == steps_per_epoch && evaluates && c.steps == 0) {
      torch::nn::Sequential full = strategy.final_model();  // collective
      evaluate_now(full, epoch, t + 1);
    }
  }
  progress.finish();

  summary.steps = steps_done;
  summary.samples = window.samples();
  summary.train_s = window.train_s();
  summary.samples_per_s = window.samples_per_s();
  summary.final_train_loss = window.last_loss();
  if (const auto bytes = strategy.state_bytes(); bytes.optimizer >= 0) {  // same answer on every rank
    for (const double b : strategy.gather_over_data_ranks(static_cast<double>(bytes.optimizer))) {
      summary.optimizer_state_bytes.push_back(static_cast<int64_t>(b));
    }
    for (const double b : strategy.gather_over_data_ranks(static_cast<double>(bytes.gradients))) {
      summary.gradient_bytes.push_back(static_cast<int64_t>(b));
    }
  }
  torch::nn::Sequential full = strategy.final_model();  // collective; whole model on rank 0
  evaluate_now(full, (steps_done - 1) / steps_per_epoch, steps_done);
  const std::string unsaved = leader ? save_final_model(c, full) : "";
  if (leader && unsaved.empty() && !c.save_scripted.empty()) {
    models::save_scripted(loaded.scripted, state_dict(*full), c.save_scripted);
    log::info("saved the TorchScript module to {}", c.save_scripted);
  }
  if (slot.reads_data) recorder.write(slot.rank);
  strategy.finish();
  LOOM_CHECK(unsaved.empty(), TrainingError, "{}", unsaved);
  write_job_trace(tracer, context_.get(), c.trace);
  if (context_ && world > 1) {
    const auto counts = context_->world().allreduce_counts();
    const auto messages = context_->world().message_counts();
    log::debug(
        "group 'world': {} allreduce(s) through shared memory, {} through Gloo; {} message(s) sent through shared "
        "memory, {} too big for it then (through Gloo); {:.1f} MiB of shared memory",
        counts.shared_memory, counts.c10d, messages.shared_memory, messages.redirected,
        static_cast<double>(context_->world().shared_memory_bytes()) / (1 << 20));
  }
  summary.wall_s = seconds_since(wall_start);
  if (leader) {
    metrics.finish(summary);
    log::info("done: {} steps, {:.0f} samples/s, final train loss {:.4f}{}", summary.steps, summary.samples_per_s,
              summary.final_train_loss,
              !summary.evaluated           ? ", not evaluated"
              : summary.test_mse >= 0      ? fmt::format(", test mse {:.6f}", summary.test_mse)
              : summary.test_accuracy >= 0 ? fmt::format(", test accuracy {:.4f}", summary.test_accuracy)
                                           : "");
    if (summary.predicted_samples_per_s > 0) {
      log::info("planner predicted {:.0f} samples/s, measured {:.0f} ({:+.1f}%)", summary.predicted_samples_per_s,
                summary.samples_per_s, 100 * summary.prediction_error());
    }
  }
  return summary;
}

}  // namespace loom::train
