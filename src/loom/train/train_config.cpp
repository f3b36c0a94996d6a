#include "loom/train/train_config.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <cmath>

#include "loom/optim/optimizer.h"

#include "loom/core/error.h"
#include "loom/core/options.h"
#include "loom/data/partitioner.h"
#include "loom/dp/grad_compression.h"
#include "loom/models/registry.h"
#include "loom/models/scripted.h"
#include "loom/pipeline/schedule.h"
#include "loom/pipeline/stage_split.h"
#include "loom/ps/server.h"
#include "loom/strategies/options.h"
#include "loom/train/progress.h"
#include "loom/train/strategy_options.h"

namespace loom::train {

void register_train_options(OptionTable& t, TrainConfig& c) {
  t.add("strategy", &c.strategy,
        fmt::format("{} | auto (the planner chooses and says why: docs/planner.md)",
                    fmt::join(strategies::strategy_names(), " | ")));
  t.add("nproc", &c.nproc, "local worker processes to spawn (or start under loom run / srun / mpirun)");
  t.add("model", &c.model, "mlp | cnn | deep-mlp, or a TorchScript file (FILE.pt, saved by torch.jit.script(m).save)");
  t.add("width", &c.width, "hidden width of deep-mlp");
  t.add("depth", &c.depth, "linear layers of deep-mlp");
  t.add("data", &c.data,
        "fashion-mnist | synthetic | npy:INPUTS.npy,TARGETS.npy | tensors:FILE.pt | csv:FILE.csv | idx:DIR "
        "(docs/data.md)");
  t.add("eval-data", &c.eval_data,
        "the evaluation set, in the forms of --data (default: the built-in set's test split; a file set has none)");
  t.add("target-column", &c.target_column, "csv: the target column's name (default: the last column)");
  t.add("allow-nan", &c.allow_nan, "train on inputs that hold NaN (by default a NaN in a batch's inputs is an error)");
  t.add("loss", &c.loss, "cross-entropy | mse | bce-with-logits");
  t.add("data-dir", &c.data_dir, "directory of the data set files (default: the package's location)");
  t.add("synthetic-samples", &c.synthetic_samples, "training samples of --data synthetic");
  t.add("epochs", &c.epochs, "passes over the training set");
  t.add("steps", &c.steps, "run exactly this many steps instead of --epochs (0: use --epochs)");
  t.add("batch-size", &c.batch_size, "GLOBAL batch per step, all workers together");
  t.add("partition", &c.partition, "how samples are divided among workers: strided | random | proportional");
  t.add("shard-weights", &c.shard_weights,
        "proportional: each worker's share of every global batch, e.g. 3,1,1, or auto (measured)");
  t.add("drop-last", &c.drop_last, "skip the samples that do not fill a whole step (random scheme)");
  t.add("bucket-mb", &c.bucket_mb, "allreduce: gradient bucket size cap in MiB");
  t.add("sync", &c.sync,
        "allreduce: grads (average gradients every step) | params (average models every --sync-every steps)");
  t.add("sync-every", &c.sync_every, "allreduce --sync params: steps between model averages");
  t.add("grad-compression", &c.grad_compression, "allreduce: none | fp16 (communicate in half precision)");
  t.add("zero", &c.zero,
        "allreduce, hybrid: ZeRO stage: 0 = off; 1 = each rank keeps optimizer state for its range of the "
        "parameters only; 2 = and only its range of the gradients (docs/zero.md)");
  t.add("zero-shard-weights", &c.zero_shard_weights,
        "allreduce --zero: each rank's share of the parameters, e.g. 2,1,1 (default: --shard-weights, else equal)");
  t.add("time-limit", &c.time_limit,
        "stop at the first --log-every step after this many seconds of training (0: no limit)");
  t.add("skip-nonfinite", &c.skip_nonfinite,
        "skip a step whose gradients hold a NaN or inf (no update) instead of stopping, up to this many steps "
        "in a row (0: stop at the first)");
  t.add("servers", &c.servers, "ps: parameter-server processes, started beside the --nproc workers");
  t.add("consistency", &c.consistency, "ps: sync | async | ssp (bounded staleness)");
  t.add("staleness", &c.staleness, "ps --consistency ssp: steps a worker may run ahead of the slowest");
  t.add("ps-slice-mb", &c.ps_slice_mb,
        "ps: tensors larger than this (MiB) are cut into slices spread over the servers; a server checkpoint is "
        "read with the size it was written with");
  t.add("ps-host", &c.ps_host, "ps: address the servers bind to and announce to workers");
  t.add("ps-save", &c.ps_save, "ps: at the end, each server checkpoints its shard to PREFIX.server<i>");
  t.add("ps-load", &c.ps_load, "ps: servers start from the shards in PREFIX.server<i>");
  t.add("ps-external-servers", &c.ps_external_servers,
        "ps: the --servers servers are started on their own (loom ps-server); every rank of this job is a worker");
  t.add("insecure", &c.insecure,
        "ps: allow workers and servers to talk off loopback without CURVE (no authentication, no encryption)");
  t.add("find-unused-parameters", &c.find_unused_parameters,
        "allreduce: allow parameters that get no gradient in a step");
  t.add("dp", &c.dp, "hybrid: data-parallel replicas, each a pipeline of --pp stages");
  t.add("pp", &c.pp, "hybrid: pipeline stages per replica");
  t.add("micro-batches", &c.micro_batches, "pipeline: micro-batches per global batch");
  t.add("schedule", &c.schedule,
        "pipeline: gpipe (all forwards, then all backwards) | 1f1b (memory bounded by the stages)");
  t.add("balance", &c.balance, "pipeline: how layers are cut into stages: uniform | params | time (profiled)");
  t.add("split", &c.split, "pipeline: layers per stage, e.g. 4,3,2 (overrides --balance)");
  t.add("optimizer", &c.optimizer, "sgd | adam | adamw");
  t.add("lr", &c.lr, "learning rate");
  t.add("momentum", &c.momentum, "SGD momentum");
  t.add("weight-decay", &c.weight_decay, "L2 weight decay");
  t.add("beta1", &c.beta1, "Adam beta1");
  t.add("beta2", &c.beta2, "Adam beta2");
  t.add("eps", &c.eps, "Adam epsilon");
  t.add("seed", &c.seed, "seed of the model initialisation and of the data order");
  t.add("threads", &c.threads, "intra-op threads per worker");
  t.add("timeout", &c.timeout, "seconds any blocking communication may take before it fails");
  t.add("interface", &c.interface, "network interface for Gloo (default: the one that reaches the master)");
  t.add("save", &c.save, "write the final model (state_dict readable by Python's torch.load) here");
  t.add("save-nonfinite", &c.save_nonfinite,
        "write --save even if the final model holds a NaN or an infinity (by default that is an error and no file)");
  t.add("save-scripted", &c.save_scripted,
        "--model FILE.pt: also write the trained TorchScript module here (Python: torch.jit.load)");
  t.add("init", &c.init, "start from this model file (as written by --save, or torch.save(model.state_dict()))");
  t.add("checkpoint-dir", &c.checkpoint_dir,
        "save checkpoints here (each rank's state, atomically, checksummed; the newest complete one is kept)");
  t.add("checkpoint-every", &c.checkpoint_every, "steps between checkpoints");
  t.add("resume", &c.resume, "continue from the newest complete checkpoint in --checkpoint-dir");
  t.add("max-restarts", &c.max_restarts,
        "when a worker dies, restart all of them (resuming from the newest checkpoint) up to this many times");
  t.add("metrics", &c.metrics, "write JSON-lines metrics here");
  t.add("cluster", &c.plan_cluster,
        "planner (loom plan, --strategy auto): the machines, a cluster file (TOML: from loom plan --calibrate or by "
        "hand); default: this machine, calibrated");
  t.add("profile", &c.plan_profile,
        "planner (loom plan, --strategy auto): the model's profile (JSON, from loom plan --profile-only); default: "
        "measured");
  t.add("predicted-samples-per-s", &c.predicted_samples_per_s,
        "the planner's prediction for this run (set by loom plan / --strategy auto); recorded in the metrics summary");
  t.add("trace", &c.trace, "write a Chrome trace (chrome://tracing, Perfetto) here");
  t.add("bench-slowdown", &c.bench_slowdown,
        "BENCHMARK AID: RANK:FACTOR makes that worker's compute FACTOR times slower (sleeps), to test --shard-weights "
        "auto");
  t.add("record-indices", &c.record_indices,
        "write, per data rank, the sample indices of every step to DIR/rank-<r>.json (to check partitioning)");
  t.add("log-every", &c.log_every, "steps between metric records and progress lines");
  t.add("eval", &c.eval, "evaluate on the test set at the end of each epoch and of the run");
  t.add("eval-batch-size", &c.eval_batch_size, "batch size of evaluation");
  t.add("progress", &c.progress, "auto | bar | lines | off");
  t.add("log-level", &c.log_level, "debug | info | warn | error | off");
}

void validate(const TrainConfig& c) {
  LOOM_CHECK(c.strategy != "auto", ConfigError,
             "--strategy auto is chosen by the process that starts the job (loom train without a job environment)");
  strategies::parse_strategy(c.strategy);  // throws on an unknown name
  check_flags_apply(c);
  // Every named value parses here, so a wrong one fails before any process starts.
  optim::parse_optimizer(c.optimizer);
  strategies::parse_sync_mode(c.sync);
  dp::parse_compression(c.grad_compression);
  LOOM_CHECK(c.bucket_mb > 0, ConfigError, "--bucket-mb must be positive, got {}", c.bucket_mb);
  LOOM_CHECK(c.zero >= 0 && c.zero <= 2, ConfigError, "--zero must be 0, 1 or 2, got {}", c.zero);
  LOOM_CHECK(c.zero == 0 || c.sync == "grads", ConfigError,
             "--zero {} shards the optimizer of gradient averaging: it does not apply to --sync {}", c.zero, c.sync);
  LOOM_CHECK(c.zero_shard_weights.empty() || c.zero > 0, ConfigError, "--zero-shard-weights needs --zero 1 or 2");
  LOOM_CHECK(c.zero == 0 || c.strategy != "hybrid" || c.dp > 1, ConfigError,
             "--zero {} shards each stage's optimizer across its replicas: --strategy hybrid needs --dp > 1", c.zero);
  if (!c.zero_shard_weights.empty()) {
    const auto w = data::parse_weights(c.zero_shard_weights);  // throws on malformed weights
    if (c.strategy == "hybrid") {
      LOOM_CHECK(static_cast<int64_t>(w.size()) == c.dp, ConfigError,
                 "--zero-shard-weights {} lists {} weights for --dp {} replicas", c.zero_shard_weights, w.size(), c.dp);
    } else {
      LOOM_CHECK(c.nproc == 1 || static_cast<int64_t>(w.size()) == c.nproc, ConfigError,
                 "--zero-shard-weights {} lists {} weights for --nproc {}", c.zero_shard_weights, w.size(), c.nproc);
    }
  }
  LOOM_CHECK(c.sync_every >= 1, ConfigError, "--sync-every must be at least 1, got {}", c.sync_every);
  LOOM_CHECK(c.time_limit >= 0, ConfigError, "--time-limit must be >= 0 seconds, got {}", c.time_limit);
  LOOM_CHECK(c.skip_nonfinite >= 0, ConfigError, "--skip-nonfinite must be >= 0 steps, got {}", c.skip_nonfinite);
  LOOM_CHECK(c.skip_nonfinite == 0 || c.strategy != "ps", ConfigError,
             "--skip-nonfinite does not apply to --strategy ps: the servers own the optimizer and apply every push");
  ps::parse_consistency(c.consistency);
  LOOM_CHECK(c.servers >= 1, ConfigError, "--servers must be at least 1, got {}", c.servers);
  LOOM_CHECK(c.staleness >= 0, ConfigError, "--staleness must be >= 0, got {}", c.staleness);
  LOOM_CHECK(c.ps_slice_mb > 0, ConfigError, "--ps-slice-mb must be positive, got {}", c.ps_slice_mb);
  pipeline::parse_schedule(c.schedule);
  pipeline::parse_balance(c.balance);
  LOOM_CHECK(c.micro_batches >= 1, ConfigError, "--micro-batches must be at least 1, got {}", c.micro_batches);
  LOOM_CHECK(c.dp >= 1, ConfigError, "--dp must be at least 1, got {}", c.dp);
  LOOM_CHECK(c.pp >= 1, ConfigError, "--pp must be at least 1, got {}", c.pp);
  // (--nproc 1, the default, is the job's own business: under loom run / srun the
  // strategy checks the world size against the mesh.)
  LOOM_CHECK(c.strategy != "hybrid" || c.nproc == 1 || c.nproc == c.dp * c.pp, ConfigError,
             "--strategy hybrid: --nproc {} does not match --dp {} x --pp {} = {} processes", c.nproc, c.dp, c.pp,
             c.dp * c.pp);
  LOOM_CHECK(c.strategy != "hybrid" || c.batch_size >= c.dp, ConfigError,
             "--batch-size {} is smaller than the {} data-parallel replicas (--dp)", c.batch_size, c.dp);
  LOOM_CHECK((c.strategy != "pipeline" && c.strategy != "hybrid") || c.micro_batches <= c.batch_size, ConfigError,
             "--micro-batches {} exceeds --batch-size {}: a micro-batch needs at least one sample", c.micro_batches,
             c.batch_size);
  data::parse_scheme(c.partition);
  models::parse_loss(c.loss);
  LOOM_CHECK(c.save_scripted.empty() || models::is_model_file(c.model), ConfigError,
             "--save-scripted needs --model FILE.pt (a TorchScript module); '{}' is a built-in model", c.model);
  LOOM_CHECK(c.shard_weights.empty() || c.partition == "proportional", ConfigError,
             "--shard-weights applies to --partition proportional, not {}", c.partition);
  if (c.shard_weights != "auto") data::parse_weights(c.shard_weights);  // throws on malformed weights
  Progress::parse_mode(c.progress);
  LOOM_CHECK(c.nproc >= 1, ConfigError, "--nproc must be at least 1, got {}", c.nproc);
  LOOM_CHECK(c.epochs >= 1, ConfigError, "--epochs must be at least 1, got {}", c.epochs);
  LOOM_CHECK(c.steps >= 0, ConfigError, "--steps must not be negative, got {}", c.steps);
  LOOM_CHECK(c.batch_size >= 1, ConfigError, "--batch-size must be at least 1, got {}", c.batch_size);
  LOOM_CHECK(c.lr > 0, ConfigError, "--lr must be positive, got {}", c.lr);
  LOOM_CHECK(c.momentum >= 0 && c.momentum < 1, ConfigError, "--momentum must be in [0, 1), got {}", c.momentum);
  LOOM_CHECK(c.weight_decay >= 0, ConfigError, "--weight-decay must not be negative, got {}", c.weight_decay);
  LOOM_CHECK(c.beta1 >= 0 && c.beta1 < 1 && c.beta2 >= 0 && c.beta2 < 1, ConfigError,
             "--beta1 and --beta2 must be in [0, 1)");
  LOOM_CHECK(c.threads >= 1, ConfigError, "--threads must be at least 1, got {}", c.threads);
  LOOM_CHECK(c.checkpoint_every >= 1, ConfigError, "--checkpoint-every must be at least 1, got {}", c.checkpoint_every);
  LOOM_CHECK(!c.resume || !c.checkpoint_dir.empty(), ConfigError, "--resume needs --checkpoint-dir");
  LOOM_CHECK(c.max_restarts >= 0, ConfigError, "--max-restarts must not be negative, got {}", c.max_restarts);
  LOOM_CHECK(c.checkpoint_dir.empty() || c.strategy != "allreduce" || c.sync != "params" ||
                 c.checkpoint_every % c.sync_every == 0,
             ConfigError, "--checkpoint-every {} must be a multiple of --sync-every {} (checkpoints follow an average)",
             c.checkpoint_every, c.sync_every);
  LOOM_CHECK(c.timeout > 0, ConfigError, "--timeout must be positive, got {}", c.timeout);
  LOOM_CHECK(std::isfinite(c.predicted_samples_per_s) && c.predicted_samples_per_s >= 0, ConfigError,
             "--predicted-samples-per-s must be a number >= 0 (0: none), got {}", c.predicted_samples_per_s);
  LOOM_CHECK(c.log_every >= 1, ConfigError, "--log-every must be at least 1, got {}", c.log_every);
  LOOM_CHECK(c.eval_batch_size >= 1, ConfigError, "--eval-batch-size must be at least 1, got {}", c.eval_batch_size);
  LOOM_CHECK(c.synthetic_samples >= 1, ConfigError, "--synthetic-samples must be at least 1, got {}",
             c.synthetic_samples);
  LOOM_CHECK(c.seed >= 0, ConfigError, "--seed must not be negative, got {}", c.seed);
}

optim::OptimizerOptions optimizer_options(const TrainConfig& c) {
  optim::OptimizerOptions o;
  o.kind = optim::parse_optimizer(c.optimizer);
  o.lr = c.lr;
  o.momentum = c.momentum;
  o.weight_decay = c.weight_decay;
  o.beta1 = c.beta1;
  o.beta2 = c.beta2;
  o.eps = c.eps;
  return o;
}

void check_cuttable(const TrainConfig& c, const models::ScriptedModel& scripted) {
  const auto kind = strategies::parse_strategy(c.strategy);
  LOOM_CHECK(
      scripted.sequential || (kind != strategies::StrategyKind::pipeline && kind != strategies::StrategyKind::hybrid),
      ConfigError,
      "--model {}: --strategy {} cuts the model between the children of a top-level nn.Sequential, but "
      "this module is a {} (script an nn.Sequential of its layers, or use single, allreduce or ps)",
      c.model, c.strategy, scripted.type_name);
}

void check_model_file(const TrainConfig& c) {
  const auto kind = strategies::parse_strategy(c.strategy);
  if (!models::is_model_file(c.model) ||
      (kind != strategies::StrategyKind::pipeline && kind != strategies::StrategyKind::hybrid)) {
    return;
  }
  check_cuttable(c, models::load_scripted(c.model));
}

}  // namespace loom::train
