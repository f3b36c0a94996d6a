#include "loom/train/trainer.h"

#include <torch/torch.h>

#include <chrono>
#include <numeric>

#include "loom/comm/context.h"
#include "loom/train/fault_injection.h"
#include "loom/core/atomic_file.h"
#include "loom/core/error.h"
#include "loom/core/process.h"
#include "loom/core/log.h"
#include "loom/data/partitioner.h"
#include "loom/data/registry.h"
#include "loom/models/registry.h"
#include "loom/train/checkpointer.h"
#include "loom/train/evaluate.h"
#include "loom/train/model_io.h"
#include "loom/train/progress.h"
#include "loom/strategies/factory.h"
#include "loom/train/strategy_options.h"
#include "loom/trace/tracer.h"

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

data::DataOptions data_options(const TrainConfig& c) {
  data::DataOptions d;
  d.name = c.data;
  d.dir = c.data_dir;
  d.synthetic.num_samples = c.synthetic_samples;
  d.synthetic.seed = static_cast<uint64_t>(c.seed);
  return d;
}

data::PartitionOptions partition_options(const TrainConfig& c, const strategies::DataSlot& slot, int64_t num_samples) {
  data::PartitionOptions p;
  p.scheme = c.partition;
  p.world_size = slot.world_size;
  p.num_samples = num_samples;
  p.batch_size = c.batch_size;
  p.seed = static_cast<uint64_t>(c.seed);
  p.drop_last = c.drop_last;
  // "auto" starts from equal weights; the data-parallel strategy re-weights from measurements.
  if (c.shard_weights != "auto") p.weights = data::parse_weights(c.shard_weights);
  return p;
}

}  // namespace

Trainer::Trainer(TrainConfig config, std::shared_ptr<comm::Context> context)
    : config_(std::move(config)), context_(std::move(context)) {
  validate(config_);
}

Summary Trainer::run() {
  const auto wall_start = Clock::now();
  const TrainConfig& c = config_;
  const int rank = context_ ? context_->rank() : 0;
  const int world = context_ ? context_->world_size() : 1;
  set_threads(c.threads);

  LOOM_CHECK(c.strategy != "single" || world == 1, ConfigError,
             "--strategy single runs one process, but this job has {} (use --nproc 1)", world);

  // Data: every data rank holds the training set in memory; rank 0 also the test set.
  const auto dopts = data_options(c);
  const data::Dataset train_set = data::load_dataset(dopts, data::Split::train);
  const data::Dataset test_set = (rank == 0 && c.eval) ? data::load_dataset(dopts, data::Split::test) : data::Dataset{};

  models::ModelOptions mopts;
  mopts.sample_shape = train_set.sample_shape;
  mopts.num_classes = train_set.num_classes;
  mopts.seed = static_cast<uint64_t>(c.seed);
  mopts.width = c.width;
  mopts.depth = c.depth;
  torch::nn::Sequential model = models::make_model(c.model, mopts);
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
  auto strategy = strategies::make_strategy(strategy_options(c, rank));
  strategies::StrategySetup setup;
  setup.model = model;
  setup.optimizer = optimizer_options(c);
  setup.context = context_;
  setup.tracer = &tracer;
  setup.sample_shape = train_set.sample_shape;
  strategy->setup(setup);
  const strategies::DataSlot slot = strategy->data_slot();

  const int64_t n = train_set.size();
  const int64_t batch = c.batch_size;
  auto partitioner = data::make_partitioner(partition_options(c, slot, n));
  const int64_t steps_per_epoch = partitioner->steps_per_epoch();
  const int64_t total_steps = c.steps > 0 ? c.steps : c.epochs * steps_per_epoch;
  const int64_t epochs = (total_steps + steps_per_epoch - 1) / steps_per_epoch;
  strategies::LocalState local;
  if (checkpointer.enabled()) local = strategy->local_state();  // a strategy without checkpoints fails here
  int64_t first_step = 0;
  if (resumed) {
    checkpointer.restore(*resumed, local, *partitioner);
    first_step = resumed->meta.step;
    resumed.reset();
  }

  const bool leader = rank == 0;
  MetricsWriter metrics(leader ? c.metrics : "");
  Progress progress(leader ? c.progress : "off", total_steps, steps_per_epoch, epochs, c.log_every);
  if (leader) {
    log::info("training {} on {} ({} samples) with --strategy {}: {} process(es), global batch {}, {} steps/epoch, "
              "{} step(s), {} thread(s) each",
              c.model, c.data, n, c.strategy, world, batch, steps_per_epoch, total_steps, c.threads);
  }

  Summary summary;
  summary.strategy = c.strategy;
  summary.world_size = world;
  summary.model = c.model;
  summary.data = c.data;
  summary.batch_size = batch;
  summary.threads = c.threads;
  summary.epochs = epochs;

  double train_s = 0, window_loss = 0, window_s = 0, window_samples = 0;
  int64_t window_steps = 0, samples = 0;
  int64_t skipped_in_a_row = 0, window_skipped = 0;  // --skip-nonfinite
  double last_window_loss = std::nan("");
  auto evaluate_now = [&](torch::nn::Sequential& full, int64_t epoch, int64_t step) {
    if (!leader || !c.eval) return;
    const auto r = evaluate(full, test_set, c.eval_batch_size);
    summary.test_loss = r.loss;
    summary.test_accuracy = r.accuracy;
    metrics.write(EvalRecord{epoch, step, r.loss, r.accuracy});
    progress.message(fmt::format("epoch {} test accuracy {:.4f} test loss {:.4f}", epoch + 1, r.accuracy, r.loss));
  };

  // --shard-weights auto: after kFirstReweight steps, then every kReweightEvery steps, each
  // data rank's measured throughput
  // (samples per second of its own compute, waiting excluded) becomes its weight. All
  // ranks compute the weights from the same gathered numbers, so they agree exactly.
  constexpr int64_t kFirstReweight = 5;
  constexpr int64_t kReweightEvery = 20;
  const bool auto_weights = c.shard_weights == "auto" && slot.world_size > 1;
  double auto_compute_s = 0;
  int64_t auto_samples = 0;

  std::vector<std::vector<int64_t>> recorded;  // --record-indices

  const auto fault = fault_plan_from_environment();  // tests and drills only
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
      if (!c.record_indices.empty()) recorded.push_back(indices);
      data::Batch local = data::gather(train_set, indices);
      if (poisons_batch(fault, rank, t)) local.inputs = torch::full_like(local.inputs, std::nan(""));
      const double share = static_cast<double>(sizes[slot.rank]) / global_batch;
      auto span = tracer.span("step", "step");
      out = strategy->step(local, strategies::StepInfo{t, epoch, global_batch, share});
    }
    if (poisons_model_after(fault, rank, t)) {
      torch::NoGradGuard no_grad;
      strategy->local_state().model->parameters().at(0).fill_(std::nan(""));
    }
    const double step_s = seconds_since(step_start);
    if (auto_weights) {
      auto_compute_s += out.compute_s;
      auto_samples += out.samples;
      if (t + 1 == kFirstReweight || (t + 1) % kReweightEvery == 0) {
        const auto rates = strategy->gather_over_data_ranks(auto_compute_s > 0 ? auto_samples / auto_compute_s : 0);
        bool usable = true;
        for (double r : rates) usable = usable && std::isfinite(r) && r > 0;
        if (usable) {
          try {
            partitioner->set_weights(rates);
          } catch (const ConfigError&) {
            // The batch is too small to give every worker a sample at these rates: keep
            // the previous weights (every rank decides the same way).
          }
          if (leader) log::debug("--shard-weights auto: throughput {} -> parts {}", fmt::join(rates, ","),
                                 fmt::join(partitioner->part_sizes(epoch, 0), ","));
        }
        auto_compute_s = 0;
        auto_samples = 0;
      }
    }
    train_s += step_s;
    window_s += step_s;
    samples += global_batch;
    window_samples += global_batch;
    if (out.skipped) {
      // Every rank skipped this step alike (nonfinite.h); its loss is not averaged in.
      ++summary.skipped_steps;
      ++window_skipped;
      LOOM_CHECK(++skipped_in_a_row <= c.skip_nonfinite, TrainingError,
                 "the gradients were not finite for {} steps in a row (steps {} to {}, epoch {}); "
                 "--skip-nonfinite {} allows {}; lower --lr or check the data",
                 skipped_in_a_row, t + 2 - skipped_in_a_row, t + 1, epoch + 1, c.skip_nonfinite, c.skip_nonfinite);
      if (leader) {
        log::warn("step {}: gradients not finite (loss {}): skipped, no update ({} in a row; --skip-nonfinite {})",
                  t + 1, out.loss, skipped_in_a_row, c.skip_nonfinite);
      }
    } else {
      skipped_in_a_row = 0;
      window_loss += out.loss * (slot.reads_data ? static_cast<double>(out.samples) / global_batch : 0.0);
      ++window_steps;
      if (!std::isfinite(out.loss) && slot.reads_data) {
        LOOM_THROW(TrainingError,
                   "the training loss became {} at step {} (epoch {}); lower --lr, check the data, or skip such "
                   "steps with --skip-nonfinite N",
                   out.loss, t + 1, epoch + 1);
      }
    }
    bool last = t + 1 == total_steps;
    if ((t + 1) % c.log_every == 0 && !last && c.time_limit > 0) {
      // Every data rank must stop at the same step: the ranks agree through the same
      // collective as the loss (strategies without one, like asynchronous parameter
      // servers, decide per worker).
      last = strategy->sum_over_data_ranks(train_s >= c.time_limit ? 1.0 : 0.0) > 0;
      if (last && leader) log::info("--time-limit {} s reached after {} steps", c.time_limit, t + 1);
    }
    if ((t + 1) % c.log_every == 0 || last) {
      // The global mean loss: each data rank's mean weighted by its share, summed.
      // (A window of only skipped steps has no loss: NaN, written as null.)
      last_window_loss = strategy->sum_over_data_ranks(window_loss) / static_cast<double>(window_steps);
      const double sps = window_s > 0 ? window_samples / window_s : 0;
      const int64_t steps_in_window = window_steps + window_skipped;
      metrics.write(StepRecord{t + 1, epoch, last_window_loss, sps, c.lr, 1e3 * window_s / steps_in_window});
      window_loss = window_s = window_samples = 0;
      window_steps = window_skipped = 0;
    }
    progress.update(t + 1, epoch, out.loss, train_s > 0 ? samples / train_s : 0);
    steps_done = t + 1;
    if (checkpointer.enabled() && (steps_done % c.checkpoint_every == 0 || last)) {
      auto span = tracer.span("checkpoint", "checkpoint");
      checkpointer.save(steps_done, *strategy, local, *partitioner);
    }
    if (last) break;
    if (in_epoch + 1 == steps_per_epoch && !last && c.eval && c.steps == 0) {
      torch::nn::Sequential full = strategy->final_model();  // collective
      evaluate_now(full, epoch, t + 1);
    }
  }
  progress.finish();

  summary.steps = steps_done;
  summary.samples = samples;
  summary.train_s = train_s;
  summary.samples_per_s = train_s > 0 ? samples / train_s : 0;
  summary.final_train_loss = last_window_loss;
  torch::nn::Sequential full = strategy->final_model();  // collective; whole model on rank 0
  evaluate_now(full, (steps_done - 1) / steps_per_epoch, steps_done);
  // A model with a NaN or an infinity is not written unless asked for (--save-nonfinite).
  // The error is raised after the collective finish() below, so the other ranks end
  // cleanly and the job ends with this one line.
  std::string unsaved;
  if (leader && !c.save.empty()) {
    const StateDict state = state_dict(*full);
    const std::string bad = c.save_nonfinite ? "" : describe_nonfinite(state);
    if (bad.empty()) {
      save_model_file(c.save, state);
      log::info("saved the model to {}", c.save);
    } else {
      unsaved = fmt::format("--save {}: nothing written: the final model is not finite ({}); pass --save-nonfinite "
                            "to write it anyway",
                            c.save, bad);
    }
  }
  if (!c.record_indices.empty() && slot.reads_data) {
    // The same shape as one rank of `loom partition`: {"rank":r,"steps":[[...],...]}.
    std::string json = fmt::format("{{\"rank\":{},\"steps\":[", slot.rank);
    for (size_t i = 0; i < recorded.size(); ++i) json += fmt::format("{}[{}]", i ? "," : "", fmt::join(recorded[i], ","));
    write_file_atomic(c.record_indices + "/rank-" + std::to_string(slot.rank) + ".json", json + "]}\n");
  }
  strategy->finish();
  LOOM_CHECK(unsaved.empty(), TrainingError, "{}", unsaved);
  if (tracer.enabled()) {
    // One file for the whole job: every rank's events, gathered on rank 0 via the store.
    std::vector<std::string> bodies{tracer.events_json()};
    if (context_ && world > 1) {
      context_->store_set("loom/trace/" + std::to_string(rank), bodies[0]);
      if (leader) {
        for (int r = 1; r < world; ++r) bodies.push_back(context_->store_get("loom/trace/" + std::to_string(r)));
      }
    }
    if (leader) trace::Tracer::write_file(c.trace, bodies);
  }
  if (context_ && world > 1) {
    const auto counts = context_->world().allreduce_counts();
    log::debug("group 'world': {} allreduce(s) through shared memory, {} through Gloo", counts.shared_memory,
               counts.c10d);
  }
  summary.wall_s = seconds_since(wall_start);
  if (leader) {
    metrics.finish(summary);
    log::info("done: {} steps, {:.0f} samples/s, final train loss {:.4f}{}", summary.steps, summary.samples_per_s,
              summary.final_train_loss,
              summary.test_accuracy >= 0 ? fmt::format(", test accuracy {:.4f}", summary.test_accuracy) : "");
  }
  return summary;
}

}  // namespace loom::train
