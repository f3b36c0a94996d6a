// TrainConfig: every setting of `loom train`, one field per flag / TOML key.
// register_train_options() is the single declaration of names, defaults and help;
// validate() rejects impossible combinations with a ConfigError naming the flag.
#pragma once

#include <cstdint>
#include <string>

namespace loom {
class OptionTable;
}

namespace loom::train {

struct TrainConfig {
  // job shape
  std::string strategy = "single";
  int nproc = 1;
  // model and data
  std::string model = "cnn";
  int64_t width = 256;
  int64_t depth = 12;
  std::string data = "fashion-mnist";
  std::string data_dir;  // empty: the data set's default location
  int64_t synthetic_samples = 8192;
  std::string eval_data;               // empty: the built-in set's test split; a file set: no evaluation
  std::string target_column;           // csv: the target column (empty: the last)
  bool allow_nan = false;              // NaN inputs are an error unless set
  std::string loss = "cross-entropy";  // cross-entropy | mse | bce-with-logits
  // schedule
  int64_t epochs = 1;
  int64_t steps = 0;           // > 0: run exactly this many steps instead of --epochs
  double time_limit = 0;       // > 0: stop at the first log step after this many seconds of training
  int64_t skip_nonfinite = 0;  // > 0: skip steps with NaN/inf gradients, up to this many in a row (nonfinite.h)
  int64_t batch_size = 64;     // GLOBAL batch per step, all workers together
  // data partitioning among data-parallel workers (data/partitioner.h)
  std::string partition = "strided";  // strided | random | proportional
  std::string shard_weights;          // proportional: "3,1,1" or "auto"; empty = equal
  bool drop_last = true;
  // data parallelism (--strategy allreduce)
  double bucket_mb = 25;                  // gradient bucket cap
  std::string sync = "grads";             // grads | params (local SGD / model averaging)
  int64_t sync_every = 1;                 // --sync params: steps between averages
  std::string grad_compression = "none";  // none | fp16 | bf16
  int64_t zero = 0;                       // ZeRO stage: 0 (off) | 1 (optimizer state sharded)
  std::string zero_shard_weights;         // "2,1,1": each rank's share of the parameters; empty: as the data
  // ps
  int64_t servers = 1;                // parameter-server processes (beside --nproc workers)
  std::string consistency = "sync";   // sync | async | ssp
  int64_t staleness = 2;              // ssp: how many steps a worker may run ahead
  double ps_slice_mb = 1;             // tensors larger than this are split (docs/performance-ps.md)
  std::string ps_host = "127.0.0.1";  // address the servers bind to and announce
  std::string ps_save;                // at the end, each server writes <prefix>.server<i>
  std::string ps_load;                // servers start from <prefix>.server<i>
  bool ps_external_servers = false;   // servers run as `loom ps-server`: every rank is a worker
  bool insecure = false;              // ps: plain TCP off loopback (no CURVE key)
  bool find_unused_parameters = false;
  // hybrid: a --dp x --pp mesh of processes (--nproc defaults to dp * pp)
  int64_t dp = 1;  // data-parallel replicas (pipelines)
  int64_t pp = 1;  // pipeline stages per replica
  // pipeline (--strategy pipeline | hybrid)
  int64_t micro_batches = 4;       // micro-batches per global batch
  std::string schedule = "1f1b";   // gpipe | 1f1b
  std::string balance = "params";  // uniform | params | time
  std::string split;               // explicit layer counts per stage, e.g. "4,3,2" (overrides --balance)
  // optimizer
  std::string optimizer = "sgd";
  double lr = 0.01;
  double momentum = 0.0;
  double weight_decay = 0.0;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  // process
  int64_t seed = 0;
  int threads = 1;        // intra-op threads per worker
  double timeout = 300;   // seconds, every blocking communication call
  std::string interface;  // Gloo network interface; empty: automatic
  // outputs
  std::string save;
  std::string save_scripted;    // --model FILE.pt: the trained TorchScript module
  bool save_nonfinite = false;  // write --save even when the final model holds a NaN or an infinity
  std::string init;
  // checkpoints and restarts (train/checkpoint.h)
  std::string checkpoint_dir;      // empty: no checkpoints
  int64_t checkpoint_every = 100;  // steps between checkpoints
  bool resume = false;             // continue from the newest complete checkpoint (one must exist)
  bool resume_if_any = false;      // not a flag: set on a launcher restart (resume when one exists)
  int max_restarts = 0;            // restart every worker after a failure, this many times
  std::string metrics;
  double predicted_samples_per_s = 0;  // > 0: the planner's prediction, recorded in the metrics summary
  // the planner's inputs (loom plan, --strategy auto); empty: measured by the planner
  std::string plan_cluster;  // --cluster: a cluster file (plan/cluster.h)
  std::string plan_profile;  // --profile: a model profile (plan/profile.h)
  std::string trace;
  std::string bench_slowdown;  // BENCHMARK AID "RANK:FACTOR": that data rank computes FACTOR x slower
  std::string record_indices;  // directory: each data rank writes the sample indices it trained on
  int64_t log_every = 50;
  bool eval = true;
  int64_t eval_batch_size = 1000;
  std::string progress = "auto";  // auto | bar | lines | off
  std::string log_level = "info";
};

void register_train_options(OptionTable& table, TrainConfig& config);
void validate(const TrainConfig& config);
// What validate() cannot see without reading files: with --model FILE.pt and --strategy
// pipeline or hybrid, loads the script and throws the ConfigError of
// check_cuttable(). `loom train` calls it before launching the job's processes, so the
// error is one line, not one per rank.
void check_model_file(const TrainConfig& config);

}  // namespace loom::train

namespace loom::models {
struct ScriptedModel;  // models/scripted.h
}

namespace loom::train {
// Pipeline and hybrid cut a model between the children of a top-level nn.Sequential:
// throws ConfigError naming the file and the module's type when `scripted` is not one.
void check_cuttable(const TrainConfig& config, const models::ScriptedModel& scripted);

}  // namespace loom::train

namespace loom::optim {
struct OptimizerOptions;  // optim/optimizer.h
}

namespace loom::train {
// The optimizer settings of a config (shared by every strategy and the parameter server).
optim::OptimizerOptions optimizer_options(const TrainConfig& config);

}  // namespace loom::train
