#include "loom/pipeline/p2p.h"

#include <torch/torch.h>

#include "loom/comm/group.h"
#include "loom/core/error.h"
#include "loom/trace/tracer.h"

namespace loom::pipeline {

namespace {
constexpr int kHeaderTag = 1 << 24;
constexpr int kMaxDims = 8;
int activation_tag(int micro) { return 2 * micro; }
int gradient_tag(int micro) { return 2 * micro + 1; }
}  // namespace

P2p::P2p(comm::Group& group, trace::Tracer* tracer)
    : group_(group), tracer_(tracer && tracer->enabled() ? tracer : nullptr) {}

P2p::~P2p() {
  // Never leave a send in flight on a tensor that is about to be freed; errors were
  // already reported by finish_sends() on the normal path.
  for (auto& s : sends_) {
    try {
      s.work.wait();
    } catch (...) {}
  }
}

int P2p::stage() const { return group_.rank(); }
int P2p::stages() const { return group_.size(); }

void P2p::send_header(const at::Tensor& activation) {
  std::vector<int64_t> shape(activation.sizes().begin() + 1, activation.sizes().end());
  if (header_sent_) {
    LOOM_CHECK(shape == sent_sample_shape_, ModelError,
               "pipeline stage {}: its output changed shape from [N,{}] to [N,{}] between micro-batches", stage(),
               fmt::join(sent_sample_shape_, ","), fmt::join(shape, ","));
    return;
  }
  LOOM_CHECK(activation.dim() >= 1 && static_cast<int>(shape.size()) <= kMaxDims, ModelError,
             "pipeline stage {}: an output of {} dimensions cannot be sent (1 to {} supported)", stage(),
             activation.dim(), kMaxDims + 1);
  std::vector<int64_t> header(2 + kMaxDims, 0);
  header[0] = static_cast<int64_t>(shape.size());
  header[1] = static_cast<int64_t>(activation.scalar_type());
  for (size_t i = 0; i < shape.size(); ++i) header[2 + i] = shape[i];
  std::vector<at::Tensor> t{torch::tensor(header, torch::kInt64)};
  group_.send(t, stage() + 1, kHeaderTag).wait();
  sent_sample_shape_ = shape;
  header_sent_ = true;
  gradients_.sample_shape = shape;
  gradients_.dtype = header[1];
  gradients_.known = true;
}

void P2p::receive_header(Pool& pool, int peer) {
  std::vector<at::Tensor> t{torch::zeros({2 + kMaxDims}, torch::kInt64)};
  group_.recv(t, peer, kHeaderTag).wait();
  const int64_t dims = t[0][0].item<int64_t>();
  LOOM_CHECK(dims >= 0 && dims <= kMaxDims, ProtocolError, "pipeline stage {}: bad shape header from rank {}", stage(),
             group_.global_rank(peer));
  pool.dtype = static_cast<int>(t[0][1].item<int64_t>());
  pool.sample_shape.clear();
  for (int64_t i = 0; i < dims; ++i) pool.sample_shape.push_back(t[0][2 + i].item<int64_t>());
  pool.known = true;
}

void P2p::send(const at::Tensor& tensor, int peer, int tag, const std::string& label) {
  Pending p;
  p.view = tensor.contiguous();
  std::vector<at::Tensor> t{p.view};
  p.posted_us = trace::Tracer::now_us();
  p.work = group_.send(t, peer, tag);
  if (tracer_) tracer_->record(label, "comm", p.posted_us, trace::Tracer::now_us(), 1);
  p.traced = true;  // Gloo reports a send's completion only to wait(): traced as handed over
  sends_.push_back(std::move(p));
}

void P2p::send_activation(int micro, const at::Tensor& activation) {
  LOOM_CHECK(stage() + 1 < stages(), ConfigError, "pipeline: the last stage has no next stage");
  send_header(activation);
  send(activation.detach(), stage() + 1, activation_tag(micro), tracer_ ? fmt::format("send act {}", micro) : "");
}

void P2p::send_gradient(int micro, const at::Tensor& gradient) {
  LOOM_CHECK(stage() > 0, ConfigError, "pipeline: the first stage has no previous stage");
  send(gradient, stage() - 1, gradient_tag(micro), tracer_ ? fmt::format("send grad {}", micro) : "");
}

void P2p::post(Pool& pool, int peer, int tag, int micro, int64_t rows, const char* what) {
  if (!pool.known || pool.posted.count(micro)) return;
  LOOM_CHECK(!pool.in_use.count(micro), ConfigError, "pipeline: {} {} received twice before its release", what, micro);
  at::Tensor buffer;
  for (auto it = pool.free.begin(); it != pool.free.end(); ++it) {
    if (it->size(0) >= rows) {
      buffer = *it;
      pool.free.erase(it);
      break;
    }
  }
  if (!buffer.defined()) {
    std::vector<int64_t> shape{rows};
    shape.insert(shape.end(), pool.sample_shape.begin(), pool.sample_shape.end());
    buffer = torch::empty(shape, torch::TensorOptions().dtype(static_cast<c10::ScalarType>(pool.dtype)));
    pool.bytes += static_cast<int64_t>(buffer.nbytes());
  }
  Pending p;
  p.buffer = buffer;
  p.view = buffer.narrow(0, 0, rows);
  std::vector<at::Tensor> t{p.view};
  p.posted_us = trace::Tracer::now_us();
  p.work = group_.recv(t, peer, tag);
  if (tracer_) p.label = fmt::format("recv {} {}", what, micro);  // only traced runs pay for it
  pool.posted.emplace(micro, std::move(p));
}

at::Tensor P2p::wait(Pool& pool, int peer, int tag, int micro, int64_t rows, const char* what) {
  const int64_t start = trace::Tracer::now_us();
  if (!pool.known) receive_header(pool, peer);
  post(pool, peer, tag, micro, rows, what);
  Pending& p = pool.posted.at(micro);
  LOOM_CHECK(p.view.size(0) == rows, ConfigError, "pipeline: {} {} posted for {} rows, waited for {}", what, micro,
             p.view.size(0), rows);
  const bool blocked = !p.work.completed();
  p.work.wait();
  const int64_t end = trace::Tracer::now_us();
  if (tracer_ && (blocked || end - start > 50)) {
    tracer_->record(fmt::format("wait {} {}", what, micro), "idle", start, end);
  }
  trace_done(p);
  at::Tensor view = p.view;
  pool.in_use.emplace(micro, p.buffer);
  pool.posted.erase(micro);
  return view;
}

void P2p::release(Pool& pool, int micro) {
  auto it = pool.in_use.find(micro);
  if (it == pool.in_use.end()) return;
  pool.free.push_back(it->second);
  pool.in_use.erase(it);
}

void P2p::post_activation_recv(int micro, int64_t rows) {
  if (stage() > 0) post(activations_, stage() - 1, activation_tag(micro), micro, rows, "act");
}
void P2p::post_gradient_recv(int micro, int64_t rows) {
  if (stage() + 1 < stages()) post(gradients_, stage() + 1, gradient_tag(micro), micro, rows, "grad");
}
at::Tensor P2p::wait_activation(int micro, int64_t rows) {
  LOOM_CHECK(stage() > 0, ConfigError, "pipeline: the first stage receives no activations");
  return wait(activations_, stage() - 1, activation_tag(micro), micro, rows, "act");
}
at::Tensor P2p::wait_gradient(int micro, int64_t rows) {
  LOOM_CHECK(stage() + 1 < stages(), ConfigError, "pipeline: the last stage receives no gradients");
  return wait(gradients_, stage() + 1, gradient_tag(micro), micro, rows, "grad");
}
void P2p::release_activation(int micro) { release(activations_, micro); }
void P2p::release_gradient(int micro) { release(gradients_, micro); }

void P2p::trace_done(Pending& p) {
  if (p.traced) return;
  p.traced = true;
  if (tracer_) tracer_->record(p.label, "comm", p.posted_us, trace::Tracer::now_us(), 1);
}

void P2p::poll() {
  if (!tracer_ || !tracer_->enabled()) return;
  for (Pool* pool : {&activations_, &gradients_}) {
    for (auto& [micro, p] : pool->posted) {
      if (!p.traced && p.work.completed()) trace_done(p);
    }
  }
}

void P2p::finish_sends() {
  for (auto& s : sends_) s.work.wait();
  sends_.clear();
}

int64_t P2p::pooled_bytes() const { return activations_.bytes + gradients_.bytes; }

}  // namespace loom::pipeline
