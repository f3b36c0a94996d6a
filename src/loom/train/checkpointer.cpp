#include "loom/train/checkpointer.h"

#include <torch/torch.h>

#include <filesystem>
#include <sstream>

#include "loom/comm/context.h"
#include "loom/comm/group.h"
#include "loom/core/error.h"
#include "loom/core/log.h"
#include "loom/data/partitioner.h"
#include "loom/dp/zero_optimizer.h"
#include "loom/strategies/strategy.h"
#include "loom/train/train_config.h"

namespace loom::train {

Checkpointer::Checkpointer(const TrainConfig& config, std::shared_ptr<comm::Context> context)
    : config_(config), context_(std::move(context)), dir_(config.checkpoint_dir) {
  enabled_ = !config.checkpoint_dir.empty();
  rank_ = context_ ? context_->rank() : 0;
  world_ = context_ ? context_->world_size() : 1;
}

CheckpointMeta Checkpointer::expected_meta(const strategies::LocalState* local) const {
  const TrainConfig& c = config_;
  CheckpointMeta m;
  m.rank = rank_;
  m.world_size = world_;
  m.strategy = c.strategy;
  m.model = c.model;
  m.data = c.data;
  m.optimizer = c.optimizer;
  m.partition = c.partition;
  m.width = c.width;
  m.depth = c.depth;
  m.batch_size = c.batch_size;
  m.seed = c.seed;
  m.dp = c.strategy == "hybrid" ? c.dp : 1;
  m.pp = c.strategy == "hybrid" ? c.pp : 1;
  if (local) {
    m.replicated = local->replicated;
    m.rank0_alone = local->rank0_alone;
    m.reshardable = local->reshardable;
    m.layout = local->layout;
  }
  return m;
}

void Checkpointer::barrier() const {
  if (context_ && world_ > 1) context_->world().barrier().wait();
}

std::optional<CheckpointPart> Checkpointer::load_for_resume() {
  if (!enabled_ || !(config_.resume || config_.resume_if_any)) return std::nullopt;
  // Rank 0 decides which checkpoint (other hosts may not share the directory).
  int64_t step = -1;
  if (rank_ == 0) step = dir_.newest_complete().value_or(-1);
  if (context_ && world_ > 1) {
    std::vector<at::Tensor> t{torch::full({1}, step, torch::kInt64)};
    context_->world().broadcast(t, 0).wait();
    step = t[0].item<int64_t>();
  }
  if (step < 0) {
    LOOM_CHECK(!config_.resume, CheckpointError, "--resume: no complete checkpoint in {}", dir_.path());
    log::info("no checkpoint in {} yet: starting from the beginning", dir_.path());
    return std::nullopt;
  }
  std::string path = dir_.part_path(step, rank_);
  const bool own = std::filesystem::exists(path);
  if (!own && rank_ > 0) path = dir_.part_path(step, 0);  // replicated state, or rank 0 saved alone
  CheckpointPart part = read_checkpoint_part(path);
  // Replicated or resharded state: a rank the old run did not have starts from rank 0's
  // part (its model; a resharded optimizer state is read from every part in restore()).
  const bool stands_for_all =
      part.meta.rank0_alone || ((part.meta.replicated || part.meta.reshardable) && part.meta.world_size != world_);
  LOOM_CHECK(own || stands_for_all, CheckpointError,
             "{}: missing, so the checkpoint of step {} cannot be resumed by rank {}", dir_.part_path(step, rank_),
             step, rank_);
  CheckpointMeta expected = expected_meta(nullptr);
  expected.replicated = part.meta.replicated;  // checked against the strategy after its setup
  expected.reshardable = part.meta.reshardable;
  const std::string why = checkpoint_mismatch(part.meta, expected);
  LOOM_CHECK(why.empty(), CheckpointError, "{} cannot be resumed by this run: {}", path, why);
  LOOM_CHECK(part.meta.step == step, CheckpointError, "{}: holds step {}, but its directory says {}", path,
             part.meta.step, step);
  if (rank_ == 0) log::info("resuming from {} after {} step(s)", dir_.step_dir(step), step);
  return part;
}

void Checkpointer::restore(const CheckpointPart& part, const strategies::LocalState& local,
                           data::Partitioner& partitioner) const {
  const std::string why = checkpoint_mismatch(part.meta, expected_meta(&local));
  LOOM_CHECK(why.empty(), CheckpointError, "{} cannot be resumed by this run: {}", part.source, why);
  LOOM_CHECK(part.meta.layout == local.layout, CheckpointError,
             "{} cannot be resumed by this run: its model was cut into stages as {}, this run cuts it as {} "
             "(pass --split {})",
             part.source, part.meta.layout, local.layout, part.meta.layout);
  load_state_dict(*local.model, part.model, part.source);
  auto* zero = dynamic_cast<dp::ZeroRedundancyOptimizer*>(local.optimizer);
  if (zero && part.meta.world_size != world_) {
    // Every part's range of the optimizer state; this rank keeps what falls in its own.
    std::vector<torch::serialize::InputArchive> archives(part.meta.world_size);
    std::vector<torch::serialize::InputArchive*> pointers;
    for (int r = 0; r < part.meta.world_size; ++r) {
      const std::string path = dir_.part_path(part.meta.step, r);
      const CheckpointPart other = r == part.meta.rank ? part : read_checkpoint_part(path);
      std::istringstream in(other.optimizer);
      archives[r].load_from(in);
      pointers.push_back(&archives[r]);
    }
    zero->load_resharded(pointers);
    log::debug("resharded the ZeRO optimizer state of {} ranks into this rank's range", part.meta.world_size);
  } else if (local.optimizer) {
    try {
      torch::serialize::InputArchive archive;
      std::istringstream in(part.optimizer);
      archive.load_from(in);
      local.optimizer->load(archive);
    } catch (const std::exception& e) {
      const std::string cause = e.what();
      LOOM_THROW(CheckpointError, "{}: the optimizer state does not fit this run's --optimizer {} ({})", part.source,
                 config_.optimizer, cause.substr(0, cause.find('\n')));
    }
  }
  if (part.rng.numel() > 0) {
    at::Generator generator = at::detail::getDefaultCPUGenerator();
    generator.set_state(part.rng);
  }
  if (!part.meta.weights.empty() && part.meta.world_size == world_) partitioner.set_weights(part.meta.weights);
}

void Checkpointer::save(int64_t steps_done, strategies::Strategy& strategy, const strategies::LocalState& local,
                        const data::Partitioner& partitioner) const {
  CheckpointPart part;
  part.meta = expected_meta(&local);
  part.meta.step = steps_done;
  if (partitioner.options().scheme == data::Scheme::proportional) part.meta.weights = partitioner.options().weights;
  part.model = state_dict(*local.model);
  if (local.optimizer) {
    torch::serialize::OutputArchive archive;
    local.optimizer->save(archive);
    std::ostringstream out;
    archive.save_to(out);
    part.optimizer = out.str();
  }
  part.rng = at::detail::getDefaultCPUGenerator().get_state();

  if (local.rank0_alone) {
    if (rank_ != 0) return;
    dir_.prepare(steps_done);
    write_checkpoint_part(dir_.part_path(steps_done, 0), part);
    strategy.checkpoint_services(dir_.step_dir(steps_done));
    dir_.mark_complete(steps_done, world_);
    dir_.remove_older_than(steps_done, 0);
    return;
  }
  dir_.prepare(steps_done);
  write_checkpoint_part(dir_.part_path(steps_done, rank_), part);
  strategy.checkpoint_services(dir_.step_dir(steps_done));
  barrier();  // every part is durable
  if (rank_ == 0) dir_.mark_complete(steps_done, world_);
  barrier();  // the new checkpoint counts: the older ones may go
  dir_.remove_older_than(steps_done, rank_);
  if (rank_ == 0) log::debug("checkpoint after step {} in {}", steps_done, dir_.step_dir(steps_done));
}

}  // namespace loom::train
