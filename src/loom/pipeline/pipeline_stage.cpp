#include "loom/pipeline/pipeline_stage.h"

#include <torch/torch.h>

#include <map>
#include <unordered_set>

#include "loom/comm/group.h"
#include "loom/core/error.h"
#include "loom/models/registry.h"
#include "loom/pipeline/p2p.h"
#include "loom/trace/tracer.h"

namespace loom::pipeline {

namespace {
constexpr int kLossTag = (1 << 24) + 2;  // last stage -> first stage, once per step
}

struct PipelineStage::InFlight {
  at::Tensor input;   // stage > 0: a leaf whose grad goes back to the previous stage
  at::Tensor output;  // not the last stage: where the received gradient enters
  at::Tensor loss;    // the last stage: this micro-batch's scaled loss
  int64_t bytes = 0;  // stashed activation bytes
};

PipelineStage::PipelineStage(torch::nn::Sequential stage_layers, comm::Group& group, PipelineStageOptions options)
    : layers_(std::move(stage_layers)), group_(group), options_(std::move(options)) {
  LOOM_CHECK(layers_ && layers_->size() > 0, ConfigError, "pipeline stage {}: has no layers", group_.rank());
  if (!options_.loss) {
    options_.loss = [](const at::Tensor& output, const at::Tensor& targets) {
      return models::training_loss(output, targets);
    };
  }
  p2p_ = std::make_unique<P2p>(group_, options_.tracer);
}

PipelineStage::~PipelineStage() = default;

int PipelineStage::stage() const { return group_.rank(); }
int PipelineStage::stages() const { return group_.size(); }

double PipelineStage::run(int64_t rows, const at::Tensor& inputs, const at::Tensor& targets, int micro_batches) {
  const int s = stage(), P = stages();
  const bool first = s == 0, last = s == P - 1;
  LOOM_CHECK(!first || (inputs.defined() && inputs.size(0) == rows), ConfigError,
             "pipeline stage 0 needs the {} input rows of the step", rows);
  LOOM_CHECK(!last || (targets.defined() && targets.size(0) == rows), ConfigError,
             "the last pipeline stage needs the {} targets of the step", rows);
  const std::vector<int64_t> sizes = micro_batch_sizes(rows, micro_batches);
  std::vector<int64_t> offsets{0};
  for (int64_t n : sizes) offsets.push_back(offsets.back() + n);
  const std::vector<Action> actions = stage_actions(options_.schedule, P, s, static_cast<int>(sizes.size()));
  trace::Tracer* tracer = options_.tracer && options_.tracer->enabled() ? options_.tracer : nullptr;

  stats_ = {};
  std::map<int, InFlight> flight;
  int64_t stash = 0;
  double loss_sum = 0;
  auto post = [&](const Action& a) {
    if (a.kind == Action::forward) {
      p2p_->post_activation_recv(a.micro, sizes[a.micro]);
    } else {
      p2p_->post_gradient_recv(a.micro, sizes[a.micro]);
    }
  };
  auto timed_wait = [&](auto&& fn) {
    const int64_t t0 = trace::Tracer::now_us();
    at::Tensor t = fn();
    stats_.wait_s += (trace::Tracer::now_us() - t0) * 1e-6;
    return t;
  };
  // Receives are posted a few actions ahead, so that a neighbour's message finds its
  // receive already waiting (Gloo hands over a message for which no receive is posted
  // only later, costing milliseconds) and arrives while this stage computes.
  constexpr size_t kPostAhead = 3;
  for (size_t j = 0; j < std::min(kPostAhead, actions.size()); ++j) post(actions[j]);
  for (size_t k = 0; k < actions.size(); ++k) {
    for (size_t j = k + 1; j < std::min(k + 1 + kPostAhead, actions.size()); ++j) post(actions[j]);
    p2p_->poll();
    const Action a = actions[k];
    const int m = a.micro;
    if (a.kind == Action::forward) {
      InFlight f;
      if (first) {
        f.input = inputs.narrow(0, offsets[m], sizes[m]);
      } else {
        f.input = timed_wait([&] { return p2p_->wait_activation(m, sizes[m]); }).detach();
        if (f.input.is_floating_point()) f.input.requires_grad_(true);
      }
      const int64_t t0 = trace::Tracer::now_us();
      // Keep every intermediate alive until counted, so no two share an address by reuse.
      std::vector<at::Tensor> outputs;
      std::unordered_set<const void*> seen;
      auto stash_bytes = [&](const at::Tensor& t) {
        outputs.push_back(t);
        if (seen.insert(t.data_ptr()).second) f.bytes += static_cast<int64_t>(t.nbytes());
      };
      stash_bytes(f.input);
      at::Tensor x = f.input;
      for (auto& layer : *layers_) {
        x = layer.forward(x);
        stash_bytes(x);
      }
      if (last) {
        f.loss = options_.loss(x, targets.narrow(0, offsets[m], sizes[m])) *
                 (static_cast<double>(sizes[m]) / static_cast<double>(rows));
        loss_sum += f.loss.item<double>();
      } else {
        f.output = x;
        p2p_->send_activation(m, x);
      }
      const int64_t t1 = trace::Tracer::now_us();
      stats_.busy_s += (t1 - t0) * 1e-6;
      if (tracer) tracer->record(fmt::format("forward {}", m), "forward", t0, t1);
      stash += f.bytes;
      flight.emplace(m, std::move(f));
      stats_.peak_stash_bytes = std::max(stats_.peak_stash_bytes, stash);
      stats_.peak_in_flight = std::max(stats_.peak_in_flight, static_cast<int>(flight.size()));
    } else {
      InFlight& f = flight.at(m);
      at::Tensor grad;
      if (!last) grad = timed_wait([&] { return p2p_->wait_gradient(m, sizes[m]); });
      if (options_.before_backward) options_.before_backward(m, m + 1 == static_cast<int>(sizes.size()));
      const int64_t t0 = trace::Tracer::now_us();
      if (last) {
        f.loss.backward();
      } else if (f.output.requires_grad()) {
        f.output.backward(grad);
      }  // else: a stage without parameters fed by data: nothing to differentiate
      if (!last) p2p_->release_gradient(m);
      if (!first) {
        at::Tensor g = f.input.grad();
        if (!g.defined()) g = torch::zeros_like(f.input);
        p2p_->send_gradient(m, g);
        p2p_->release_activation(m);
      }
      const int64_t t1 = trace::Tracer::now_us();
      stats_.busy_s += (t1 - t0) * 1e-6;
      if (tracer) tracer->record(fmt::format("backward {}", m), "backward", t0, t1);
      stash -= f.bytes;
      flight.erase(m);
    }
  }
  p2p_->finish_sends();
  peak_stash_ever_ = std::max(peak_stash_ever_, stats_.peak_stash_bytes);

  if (P > 1 && last) {
    std::vector<at::Tensor> t{torch::full({1}, loss_sum, torch::kDouble)};
    group_.send(t, 0, kLossTag).wait();
  } else if (P > 1 && first) {
    std::vector<at::Tensor> t{torch::zeros({1}, torch::kDouble)};
    group_.recv(t, P - 1, kLossTag).wait();
    loss_sum = t[0].item<double>();
  }
  return first || last ? loss_sum : 0.0;
}

}  // namespace loom::pipeline
