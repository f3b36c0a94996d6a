#include "loom/train/evaluate.h"

#include <torch/torch.h>

namespace loom::train {

EvalResult evaluate(torch::nn::Sequential& model, const data::Dataset& dataset, int64_t batch_size) {
  EvalResult r;
  const int64_t n = dataset.size();
  if (n == 0) return r;
  torch::NoGradGuard no_grad;
  const bool was_training = model->is_training();
  model->eval();
  double loss_sum = 0;
  int64_t correct = 0;
  for (int64_t start = 0; start < n; start += batch_size) {
    const int64_t len = std::min(batch_size, n - start);
    const auto x = dataset.inputs.narrow(0, start, len);
    const auto y = dataset.targets.narrow(0, start, len);
    const auto logits = model->forward(x);
    loss_sum += torch::nn::functional::cross_entropy(
                    logits, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                    .item<double>();
    correct += logits.argmax(1).eq(y).sum().item<int64_t>();
  }
  model->train(was_training);
  r.samples = n;
  r.loss = loss_sum / n;
  r.accuracy = static_cast<double>(correct) / n;
  return r;
}

}  // namespace loom::train
