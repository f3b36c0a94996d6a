#include "loom/train/strategy_options.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

#include "loom/core/error.h"
#include "loom/data/partitioner.h"
#include "loom/models/registry.h"
#include "loom/ps/van_options.h"
#include "loom/strategies/bench_slowdown.h"

namespace loom::train {

namespace {

dp::DdpOptions ddp_options(const TrainConfig& c) {
  dp::DdpOptions o;
  o.bucket_cap_mb = c.bucket_mb;
  o.first_bucket_mb = std::min(1.0, c.bucket_mb);  // the first bucket reduced starts early
  o.find_unused_parameters = c.find_unused_parameters;
  o.compression = dp::parse_compression(c.grad_compression);
  return o;
}

}  // namespace

strategies::StrategyOptions strategy_options(const TrainConfig& c, int rank, const ps::VanOptions& van) {
  using namespace strategies;
  StrategyOptions o;
  o.kind = parse_strategy(c.strategy);
  o.step.loss = models::parse_loss(c.loss);
  o.step.skip_nonfinite = c.skip_nonfinite > 0;
  o.step.slowdown = bench_slowdown_for(c.bench_slowdown, rank);

  o.allreduce.sync = parse_sync_mode(c.sync);
  o.allreduce.sync_every = c.sync_every;
  o.allreduce.ddp = ddp_options(c);
  o.allreduce.zero = static_cast<int>(c.zero);
  // By default a rank owns a share of the parameters as large as its share of the data.
  if (!c.zero_shard_weights.empty()) {
    o.allreduce.zero_shard_weights = data::parse_weights(c.zero_shard_weights);
  } else if (!c.shard_weights.empty() && c.shard_weights != "auto") {
    o.allreduce.zero_shard_weights = data::parse_weights(c.shard_weights);
  }

  if (o.kind == StrategyKind::ps) {
    o.ps.servers = static_cast<int>(c.servers);
    o.ps.consistency = ps::parse_consistency(c.consistency);
    o.ps.staleness = static_cast<int>(c.staleness);
    o.ps.slice_bytes = static_cast<int64_t>(c.ps_slice_mb * (1 << 20));
    // Only the last part of --ps-save travels: the servers write under their own directory.
    if (!c.ps_save.empty()) o.ps.save_name = ps::split_save_prefix(c.ps_save).name;
    o.ps.timeout = std::chrono::milliseconds(static_cast<int64_t>(c.timeout * 1000));
    o.ps.van = van;  // the job's CURVE key, if any
    o.ps.van.insecure = c.insecure;
  }

  const bool hybrid = o.kind == StrategyKind::hybrid;
  o.hybrid.dp = hybrid ? static_cast<int>(c.dp) : 1;
  o.hybrid.pp = hybrid ? static_cast<int>(c.pp) : 0;
  o.hybrid.micro_batches = static_cast<int>(c.micro_batches);
  o.hybrid.schedule = pipeline::parse_schedule(c.schedule);
  o.hybrid.split.split = c.split;
  o.hybrid.split.balance = pipeline::parse_balance(c.balance);
  // --balance time profiles one micro-batch of one pipeline.
  o.hybrid.split.profile_rows = std::max<int64_t>(1, c.batch_size / (o.hybrid.dp * c.micro_batches));
  o.hybrid.ddp = ddp_options(c);
  o.hybrid.zero = static_cast<int>(c.zero);
  if (!c.zero_shard_weights.empty()) o.hybrid.zero_shard_weights = data::parse_weights(c.zero_shard_weights);
  return o;
}

namespace {

struct FlagRule {
  const char* flag;
  bool set;
  std::vector<std::string> used_by;
};

// The strategy-specific flags: whether `c` sets each (differs from its default) and the
// strategies that use it.
std::vector<FlagRule> flag_rules(const TrainConfig& c) {
  const TrainConfig d;  // the defaults
  const std::vector<std::string> ddp{"allreduce", "hybrid"}, ps{"ps"}, pipe{"pipeline", "hybrid"};
  return {
      {"bucket-mb", c.bucket_mb != d.bucket_mb, ddp},
      {"grad-compression", c.grad_compression != d.grad_compression, ddp},
      {"zero", c.zero != d.zero, {"allreduce", "hybrid"}},
      {"find-unused-parameters", c.find_unused_parameters != d.find_unused_parameters, ddp},
      {"sync", c.sync != d.sync, {"allreduce"}},
      {"sync-every", c.sync_every != d.sync_every, {"allreduce"}},
      {"servers", c.servers != d.servers, ps},
      {"consistency", c.consistency != d.consistency, ps},
      {"staleness", c.staleness != d.staleness, ps},
      {"ps-slice-mb", c.ps_slice_mb != d.ps_slice_mb, ps},
      {"ps-host", c.ps_host != d.ps_host, ps},
      {"ps-save", c.ps_save != d.ps_save, ps},
      {"ps-load", c.ps_load != d.ps_load, ps},
      {"ps-external-servers", c.ps_external_servers != d.ps_external_servers, ps},
      {"insecure", c.insecure != d.insecure, ps},
      {"dp", c.dp != d.dp, {"hybrid"}},
      {"pp", c.pp != d.pp, {"hybrid"}},
      {"micro-batches", c.micro_batches != d.micro_batches, pipe},
      {"schedule", c.schedule != d.schedule, pipe},
      {"balance", c.balance != d.balance, pipe},
      {"split", c.split != d.split, pipe},
      {"bench-slowdown", c.bench_slowdown != d.bench_slowdown, {"single", "allreduce", "ps"}},
  };
}

bool uses(const FlagRule& r, const std::string& strategy) {
  return std::find(r.used_by.begin(), r.used_by.end(), strategy) != r.used_by.end();
}

}  // namespace

void check_flags_apply(const TrainConfig& c) {
  for (const FlagRule& r : flag_rules(c)) {
    if (!r.set || uses(r, c.strategy)) continue;
    LOOM_THROW(ConfigError, "--{} does not apply to --strategy {} (it is used by --strategy {})", r.flag, c.strategy,
               fmt::join(r.used_by, ", "));
  }
}

std::vector<std::string> flags_unused_by(const TrainConfig& c, const std::string& strategy) {
  std::vector<std::string> out;
  for (const FlagRule& r : flag_rules(c)) {
    if (r.set && !uses(r, strategy)) out.emplace_back(r.flag);
  }
  return out;
}

TrainConfig as_single_process(const TrainConfig& c) {
  const TrainConfig d;
  TrainConfig s = c;
  s.strategy = "single";
  s.nproc = 1;
  s.bucket_mb = d.bucket_mb;
  s.grad_compression = d.grad_compression;
  s.zero = d.zero;
  s.zero_shard_weights = d.zero_shard_weights;
  s.find_unused_parameters = d.find_unused_parameters;
  s.sync = d.sync;
  s.sync_every = d.sync_every;
  s.servers = d.servers;
  s.consistency = d.consistency;
  s.staleness = d.staleness;
  s.ps_slice_mb = d.ps_slice_mb;
  s.ps_host = d.ps_host;
  s.ps_save = d.ps_save;
  s.ps_load = d.ps_load;
  s.ps_external_servers = d.ps_external_servers;
  s.insecure = d.insecure;
  s.dp = d.dp;
  s.pp = d.pp;
  s.micro_batches = d.micro_batches;
  s.schedule = d.schedule;
  s.balance = d.balance;
  s.split = d.split;
  s.partition = d.partition;
  s.shard_weights = d.shard_weights;
  s.bench_slowdown = d.bench_slowdown;
  return s;
}

}  // namespace loom::train
