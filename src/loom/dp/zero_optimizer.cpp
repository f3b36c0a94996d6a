#include "loom/dp/zero_optimizer.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "loom/comm/group.h"
#include "loom/core/error.h"

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

int64_t ZeroRedundancyOptimizer::state_bytes() const { return optim::state_bytes(*local_); }

void ZeroRedundancyOptimizer::save(torch::serialize::OutputArchive& archive) const { local_->save(archive); }

void ZeroRedundancyOptimizer::load(torch::serialize::InputArchive& archive) { local_->load(archive); }

}  // namespace loom::dp
