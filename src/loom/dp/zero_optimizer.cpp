#include "loom/dp/zero_optimizer.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "loom/comm/group.h"
#include "loom/core/error.h"
#include "loom/dp/distributed_data_parallel.h"

namespace loom::dp {

std::vector<int64_t> zero_shard_counts(int64_t total, const std::vector<double>& weights) {
  LOOM_CHECK(!weights.empty(), ConfigError, "ZeRO: no ranks to shard the parameters among");
  double sum = 0;
  for (size_t r = 0; r < weights.size(); ++r) {
    LOOM_CHECK(std::isfinite(weights[r]) && weights[r] >= 0, ConfigError,
               "ZeRO shard weight of rank {} must be finite and >= 0, got {}", r, weights[r]);
    sum += weights[r];
  }
  LOOM_CHECK(sum > 0, ConfigError, "ZeRO shard weights must not all be 0");
  std::vector<int64_t> counts(weights.size());
  std::vector<std::pair<double, size_t>> remainders;
  int64_t given = 0;
  for (size_t r = 0; r < weights.size(); ++r) {
    const double exact = static_cast<double>(total) * weights[r] / sum;
    counts[r] = static_cast<int64_t>(std::floor(exact));
    given += counts[r];
    remainders.push_back({exact - static_cast<double>(counts[r]), r});
  }
  // Largest remainder first; ties to the lower rank.
  std::stable_sort(remainders.begin(), remainders.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  for (size_t k = 0; given < total; ++k, ++given) ++counts[remainders[k % remainders.size()].second];
  return counts;
}

ZeroRedundancyOptimizer::ZeroRedundancyOptimizer(std::vector<at::Tensor> parameters, comm::Group& group,
                                                 optim::OptimizerOptions options, ZeroOptions zero)
    : torch::optim::Optimizer(parameters, std::make_unique<torch::optim::SGDOptions>(options.lr)), group_(group) {
  LOOM_CHECK(!parameters.empty(), ModelError, "ZeRO: the model has no trainable parameters");
  const auto dtype = parameters.front().scalar_type();
  int64_t total = 0;
  for (const auto& p : parameters) {
    LOOM_CHECK(p.scalar_type() == dtype && (dtype == at::kFloat || dtype == at::kDouble) && p.device().is_cpu(),
               ModelError,
               "ZeRO: every parameter must be a CPU tensor of one dtype, float32 or float64 (found {} and {})",
               c10::toString(dtype), c10::toString(p.scalar_type()));
    offsets_.push_back(total);
    total += p.numel();
  }
  // The flat buffer; each parameter becomes a view of it (same Variable: the model,
  // autograd and DistributedDataParallel's hooks keep working).
  flat_ = at::empty({total}, parameters.front().options().requires_grad(false));
  {
    torch::NoGradGuard no_grad;
    for (size_t k = 0; k < parameters.size(); ++k) {
      at::Tensor view = flat_.narrow(0, offsets_[k], parameters[k].numel()).view(parameters[k].sizes());
      view.copy_(parameters[k]);
      parameters[k].set_data(view);
    }
  }
  params_ = std::move(parameters);

  std::vector<double> weights = zero.shard_weights;
  if (weights.empty()) weights.assign(group.size(), 1.0);
  LOOM_CHECK(static_cast<int>(weights.size()) == group.size(), ConfigError,
             "ZeRO: {} shard weights for {} data-parallel ranks", weights.size(), group.size());
  counts_ = zero_shard_counts(total, weights);
  begin_ = std::accumulate(counts_.begin(), counts_.begin() + group.rank(), int64_t{0});
  end_ = begin_ + counts_[group.rank()];

  std::vector<at::Tensor> views;
  for (size_t k = 0; k < params_.size(); ++k) {
    const int64_t lo = std::max(begin_, offsets_[k]), hi = std::min(end_, offsets_[k] + params_[k].numel());
    if (lo >= hi) continue;
    at::Tensor view = flat_.narrow(0, lo, hi - lo).detach();
    pieces_.push_back({k, lo - offsets_[k], hi - offsets_[k], view});
    views.push_back(view);
  }
  local_ = optim::make_optimizer(views, options);
}

ZeroRedundancyOptimizer::~ZeroRedundancyOptimizer() = default;

torch::Tensor ZeroRedundancyOptimizer::step(LossClosure closure) {
  LOOM_CHECK(!closure, ConfigError, "ZeRO: step() takes no closure");
  bool any = false;
  for (auto& piece : pieces_) {
    if (grad_shard_.defined()) {  // stage 2: the reduced gradients of this range
      piece.view.mutable_grad() = grad_shard_.narrow(0, offsets_[piece.param] + piece.lo - begin_, piece.hi - piece.lo);
      any = true;
      continue;
    }
    const at::Tensor& g = params_[piece.param].grad();
    // A parameter without a gradient is not stepped, as torch's optimizers skip it.
    piece.view.mutable_grad() = g.defined() ? g.reshape(-1).narrow(0, piece.lo, piece.hi - piece.lo) : at::Tensor();
    any = any || g.defined();
  }
  if (any) local_->step();
  for (auto& piece : pieces_) piece.view.mutable_grad() = at::Tensor();  // no reference to this step's gradients
  group_.all_gather(flat_, counts_).wait();
  return {};
}

void ZeroRedundancyOptimizer::shard_gradients(DistributedDataParallel& ddp) {
  LOOM_CHECK(&ddp.group() == &group_, ConfigError,
             "ZeRO stage 2: DistributedDataParallel must reduce over the optimizer's group");
  std::vector<at::Tensor> trainable;
  for (const auto& p : ddp.module().parameters(/*recurse=*/true)) {
    if (p.defined() && p.requires_grad()) trainable.push_back(p);
  }
  bool same = trainable.size() == params_.size();
  for (size_t k = 0; same && k < params_.size(); ++k) {
    same = trainable[k].unsafeGetTensorImpl() == params_[k].unsafeGetTensorImpl();
  }
  LOOM_CHECK(same, ModelError,
             "ZeRO stage 2: the optimizer ({} parameters) and DistributedDataParallel ({} trainable parameters) must "
             "hold the same parameters in the same order",
             params_.size(), trainable.size());
  grad_shard_ = ddp.shard_gradients(counts_);
}

int64_t ZeroRedundancyOptimizer::state_bytes() const { return optim::state_bytes(*local_); }

namespace {
std::string state_key(const at::Tensor& p) { return c10::guts::to_string(p.unsafeGetTensorImpl()); }

int64_t read_int(torch::serialize::InputArchive& archive, const std::string& key) {
  c10::IValue v;
  archive.read(key, v);
  return v.toInt();
}
}  // namespace

void ZeroRedundancyOptimizer::save(torch::serialize::OutputArchive& archive) const {
  archive.write("zero.begin", c10::IValue(begin_));
  archive.write("zero.end", c10::IValue(end_));
  archive.write("zero.total", c10::IValue(flat_.numel()));
  int64_t step = 0;
  for (const std::string& name : optim::state_names(*local_)) {
    at::Tensor flat = at::zeros({end_ - begin_}, flat_.options());
    bool any = false;
    for (const auto& piece : pieces_) {
      const auto it = local_->state().find(state_key(piece.view));
      if (it == local_->state().end()) continue;
      const optim::ParamStateView view = optim::view_state(*it->second);
      step = std::max(step, view.step);
      const at::Tensor t = view.get(name);
      if (!t.defined()) continue;
      const int64_t at = offsets_[piece.param] + piece.lo - begin_;
      flat.narrow(0, at, piece.hi - piece.lo).copy_(t.reshape(-1));
      any = true;
    }
    if (any) archive.write("zero." + name, flat);
  }
  archive.write("zero.step", c10::IValue(step));
}

void ZeroRedundancyOptimizer::load(torch::serialize::InputArchive& archive) { load_resharded({&archive}); }

void ZeroRedundancyOptimizer::load_resharded(const std::vector<torch::serialize::InputArchive*>& parts) {
  const int64_t total = flat_.numel();
  const auto names = optim::state_names(*local_);
  // This rank's range of each kind of state, assembled from the parts that overlap it.
  std::vector<at::Tensor> mine(names.size());
  std::vector<int64_t> covered(names.size(), 0);
  int64_t step = 0;
  for (auto* part : parts) {
    const int64_t begin = read_int(*part, "zero.begin"), end = read_int(*part, "zero.end");
    LOOM_CHECK(read_int(*part, "zero.total") == total, CheckpointError,
               "ZeRO optimizer state for {} parameters cannot be loaded into a model of {}",
               read_int(*part, "zero.total"), total);
    step = std::max(step, read_int(*part, "zero.step"));
    const int64_t lo = std::max(begin, begin_), hi = std::min(end, end_);
    for (size_t k = 0; k < names.size(); ++k) {
      at::Tensor flat;
      if (!part->try_read("zero." + names[k], flat)) continue;  // a part saved before its first step
      if (!mine[k].defined()) mine[k] = at::zeros({end_ - begin_}, flat_.options());
      if (lo < hi) {
        mine[k].narrow(0, lo - begin_, hi - lo).copy_(flat.narrow(0, lo - begin, hi - lo));
        covered[k] += hi - lo;
      }
    }
  }
  local_->state().clear();
  for (size_t k = 0; k < names.size(); ++k) {
    if (!mine[k].defined()) continue;
    LOOM_CHECK(covered[k] == end_ - begin_, CheckpointError,
               "the ZeRO optimizer state loaded covers {} of the {} elements of this rank's range [{}, {})", covered[k],
               end_ - begin_, begin_, end_);
  }
  for (const auto& piece : pieces_) {
    const int64_t at = offsets_[piece.param] + piece.lo - begin_, n = piece.hi - piece.lo;
    if (!mine[0].defined()) continue;  // no state yet (saved before the first step)
    optim::ParamStateView view;
    view.step = step;
    for (size_t k = 0; k < names.size(); ++k) {
      if (mine[k].defined()) view.tensors.emplace_back(names[k], mine[k].narrow(0, at, n).clone());
    }
    local_->state()[state_key(piece.view)] = optim::make_state(*local_, view);
  }
}

}  // namespace loom::dp
