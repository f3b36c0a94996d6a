#include <fmt/ranges.h>
#include <torch/nn/functional/loss.h>

#include "loom/core/choice.h"
#include "loom/core/error.h"
#include "loom/models/registry.h"

namespace loom::models {

namespace {
constexpr Choice<LossKind> kLosses[] = {
    {"cross-entropy", LossKind::cross_entropy},
    {"mse", LossKind::mse},
    {"bce-with-logits", LossKind::bce_with_logits},
};
}  // namespace

LossKind parse_loss(const std::string& name) { return parse_choice("loss", name, kLosses); }
const char* loss_name(LossKind kind) { return choice_name(kind, kLosses); }
bool takes_class_targets(LossKind kind) { return kind == LossKind::cross_entropy; }

at::Tensor aligned_targets(LossKind kind, const at::Tensor& output, const at::Tensor& targets) {
  if (takes_class_targets(kind)) return targets;
  LOOM_CHECK(targets.numel() == output.numel(), ModelError,
             "--loss {}: the model's output has shape {} but the targets {} (the same number of values per row is "
             "needed)",
             loss_name(kind), fmt::join(output.sizes(), "x"), fmt::join(targets.sizes(), "x"));
  at::Tensor t = targets.sizes() == output.sizes() ? targets : targets.reshape(output.sizes());
  return t.scalar_type() == output.scalar_type() ? t : t.to(output.scalar_type());
}

at::Tensor training_loss(LossKind kind, const at::Tensor& output, const at::Tensor& targets) {
  namespace F = torch::nn::functional;
  switch (kind) {
    case LossKind::cross_entropy: return F::cross_entropy(output, targets);
    case LossKind::mse: return F::mse_loss(output, aligned_targets(kind, output, targets));
    case LossKind::bce_with_logits:
      return F::binary_cross_entropy_with_logits(output, aligned_targets(kind, output, targets));
  }
  LOOM_THROW(ModelError, "unknown loss");
}

at::Tensor training_loss(const at::Tensor& logits, const at::Tensor& targets) {
  return training_loss(LossKind::cross_entropy, logits, targets);
}

}  // namespace loom::models
