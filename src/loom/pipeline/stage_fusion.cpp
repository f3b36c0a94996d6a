#include "loom/pipeline/pipeline_stage.h"

#include <torch/torch.h>

#include "loom/comm/group.h"
#include "loom/core/error.h"
#include "loom/pipeline/stage_split.h"

namespace loom::pipeline {

namespace {
constexpr int kFuseTag = 1 << 25;

// Parameters then buffers of layers [begin, end), in the model's key order.
std::vector<at::Tensor> layer_tensors(const torch::nn::Sequential& full, int64_t begin, int64_t end) {
  std::vector<at::Tensor> out;
  for (int64_t i = begin; i < end; ++i) {
    const auto& layer = full->ptr(i);
    for (const auto& p : layer->parameters()) out.push_back(p);
    for (const auto& b : layer->buffers()) out.push_back(b);
  }
  return out;
}
}  // namespace

torch::nn::Sequential stage_layers(const torch::nn::Sequential& full, int64_t begin, int64_t end) {
  LOOM_CHECK(0 <= begin && begin < end && end <= static_cast<int64_t>(full->size()), ConfigError,
             "stage layers [{}, {}) outside a model of {} layers", begin, end, full->size());
  torch::nn::Sequential stage;
  auto it = full->begin() + begin;
  for (int64_t i = begin; i < end; ++i, ++it) stage->push_back(std::to_string(i), *it);
  return stage;
}

void gather_stages(torch::nn::Sequential& full, const std::vector<int64_t>& split, comm::Group& group) {
  LOOM_CHECK(static_cast<int>(split.size()) == group.size(), ConfigError,
             "gather_stages: a split of {} stages over a group of {}", split.size(), group.size());
  const auto offsets = stage_offsets(split);
  const int me = group.rank();
  if (me != 0) {
    std::vector<at::Tensor> mine;
    for (const auto& t : layer_tensors(full, offsets[me], offsets[me + 1])) mine.push_back(t.detach().contiguous());
    std::vector<comm::Work> works;
    for (size_t i = 0; i < mine.size(); ++i) {
      std::vector<at::Tensor> one{mine[i]};
      works.push_back(group.send(one, 0, kFuseTag + static_cast<int>(i)));
    }
    for (auto& w : works) w.wait();
    return;
  }
  for (int s = 1; s < group.size(); ++s) {
    const auto targets = layer_tensors(full, offsets[s], offsets[s + 1]);
    std::vector<at::Tensor> incoming;
    std::vector<comm::Work> works;
    for (size_t i = 0; i < targets.size(); ++i) {
      incoming.push_back(torch::empty_like(targets[i], at::MemoryFormat::Contiguous));
      std::vector<at::Tensor> one{incoming.back()};
      works.push_back(group.recv(one, s, kFuseTag + static_cast<int>(i)));
    }
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < targets.size(); ++i) {
      works[i].wait();
      at::Tensor target = targets[i];
      target.copy_(incoming[i]);
    }
  }
}

}  // namespace loom::pipeline
