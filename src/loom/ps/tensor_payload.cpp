#include "loom/ps/tensor_payload.h"

#include <ATen/ATen.h>

#include <cstdint>
#include <cstring>
#include <memory>

#include "loom/core/error.h"

namespace loom::ps {

Payload tensor_payload(const at::Tensor& t, Header& h) {
  LOOM_CHECK(t.scalar_type() == at::kFloat && t.is_contiguous(), ConfigError,
             "parameter server: only contiguous float32 tensors travel, got {} {}", std::string(t.dtype().name()),
             t.is_contiguous() ? "contiguous" : "strided");
  LOOM_CHECK(t.dim() <= kMaxDims, ConfigError, "parameter server: a tensor of {} dims exceeds the maximum of {}",
             t.dim(), kMaxDims);
  h.dtype = DType::f32;
  h.ndim = static_cast<uint8_t>(t.dim());
  h.shape.fill(0);
  for (int64_t i = 0; i < t.dim(); ++i) h.shape[i] = t.size(i);
  h.payload_bytes = static_cast<uint64_t>(t.numel()) * sizeof(float);
  auto keep = std::make_shared<at::Tensor>(t);
  Payload p;
  p.data = t.data_ptr();
  p.size = h.payload_bytes;
  p.owner = std::move(keep);
  return p;
}

std::vector<int64_t> header_shape(const Header& h) { return {h.shape.begin(), h.shape.begin() + h.ndim}; }

at::Tensor payload_as_float_tensor(const Payload& payload, at::IntArrayRef shape) {
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  const size_t bytes = static_cast<size_t>(numel) * sizeof(float);
  LOOM_CHECK(payload.size == bytes, ProtocolError, "payload of {} bytes does not fit a tensor of {} bytes",
             payload.size, bytes);
  if (reinterpret_cast<uintptr_t>(payload.data) % alignof(float) == 0 && payload.owner) {
    auto owner = payload.owner;
    return at::from_blob(
        const_cast<void*>(payload.data), shape, [owner](void*) mutable { owner.reset(); },
        at::TensorOptions().dtype(at::kFloat));
  }
  at::Tensor t = at::empty(shape, at::kFloat);
  copy_payload(payload, t);
  return t;
}

void copy_payload(const Payload& payload, const at::Tensor& dst) {
  const size_t bytes = static_cast<size_t>(dst.numel()) * dst.element_size();
  LOOM_CHECK(dst.is_contiguous() && payload.size == bytes, ProtocolError,
             "payload of {} bytes does not fit a tensor of {} bytes", payload.size, bytes);
  if (bytes) std::memcpy(dst.data_ptr(), payload.data, bytes);
}

}  // namespace loom::ps
