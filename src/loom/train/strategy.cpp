#include "loom/train/strategy.h"

#include <torch/torch.h>

#include "loom/comm/group.h"
#include "loom/core/error.h"
#include "loom/dp/allreduce_strategy.h"
#include "loom/hybrid/hybrid_strategy.h"
#include "loom/pipeline/pipeline_strategy.h"
#include "loom/ps/ps_strategy.h"
#include "loom/train/single_strategy.h"
#include "loom/train/tracer.h"

namespace loom::train {

std::unique_ptr<Strategy> make_strategy(const std::string& name) {
  if (name == "single") return std::make_unique<SingleStrategy>();
  if (name == "allreduce") return std::make_unique<dp::AllreduceStrategy>();
  if (name == "ps") return std::make_unique<ps::PsStrategy>();
  if (name == "pipeline") return std::make_unique<pipeline::PipelineStrategy>();
  if (name == "hybrid") return std::make_unique<hybrid::HybridStrategy>();
  LOOM_THROW(ConfigError, "--strategy: unknown strategy '{}' (expected single, allreduce, ps, pipeline or hybrid)",
             name);
}

LocalState Strategy::local_state() {
  LOOM_THROW(ConfigError, "--checkpoint-dir: --strategy {} cannot write training checkpoints yet", name());
}

at::Tensor training_loss(const at::Tensor& logits, const at::Tensor& targets) {
  return torch::nn::functional::cross_entropy(logits, targets);
}

at::Tensor forward_backward(torch::nn::Sequential& model, const data::Batch& batch, Tracer& tracer) {
  at::Tensor loss;
  {
    auto span = tracer.span("forward");
    loss = training_loss(model->forward(batch.inputs), batch.targets);
  }
  {
    auto span = tracer.span("backward");
    loss.backward();
  }
  return loss;
}

double sum_over(comm::Group& group, double value) {
  std::vector<at::Tensor> t{torch::full({1}, value, torch::kDouble)};
  group.allreduce(t).wait();
  return t[0].item<double>();
}

std::vector<double> gather_over(comm::Group& group, double value) {
  std::vector<at::Tensor> out;
  for (int r = 0; r < group.size(); ++r) out.push_back(torch::zeros({1}, torch::kDouble));
  group.allgather(out, torch::full({1}, value, torch::kDouble)).wait();
  std::vector<double> values;
  for (const auto& t : out) values.push_back(t.item<double>());
  return values;
}

}  // namespace loom::train
