#include "loom/train/evaluate.h"

#include <torch/torch.h>

namespace loom::train {

EvalResult evaluate(torch::nn::Sequential& model, const data::Dataset& dataset, int64_t batch_size,
                    models::LossKind kind) {
  EvalResult r;
  const int64_t n = dataset.size();
  if (n == 0) return r;
  torch::NoGradGuard no_grad;
  const bool was_training = model->is_training();
  model->eval();
  double loss_sum = 0;  // sum over rows of each row's loss
  double right = 0;     // rows (cross-entropy) or values (bce) classified right
  double values = 0;    // values compared (bce)
  for (int64_t start = 0; start < n; start += batch_size) {
    const int64_t len = std::min(batch_size, n - start);
    const data::Batch batch = data::slice(dataset, start, len);
    const at::Tensor out = model->forward(batch.inputs);
    const at::Tensor y = models::aligned_targets(kind, out, batch.targets);
    loss_sum += models::training_loss(kind, out, y).item<double>() * static_cast<double>(len);
    if (kind == models::LossKind::cross_entropy) {
      right += static_cast<double>(out.argmax(1).eq(y).sum().item<int64_t>());
    } else if (kind == models::LossKind::bce_with_logits) {
      right += static_cast<double>(out.gt(0).eq(y.ge(0.5)).sum().item<int64_t>());
      values += static_cast<double>(y.numel());
    }
  }
  model->train(was_training);
  r.samples = n;
  r.loss = loss_sum / static_cast<double>(n);
  if (kind == models::LossKind::cross_entropy) r.accuracy = right / static_cast<double>(n);
  if (kind == models::LossKind::bce_with_logits) r.accuracy = right / values;
  if (kind == models::LossKind::mse) r.mse = r.loss;
  return r;
}

}  // namespace loom::train
