#include "loom/dp/grad_compression.h"

#include <ATen/ATen.h>

#include "loom/comm/group.h"
#include "loom/core/choice.h"
#include "loom/core/error.h"

namespace loom::dp {
namespace {

comm::Work allreduce_in_place(comm::Group& group, const at::Tensor& buffer) {
  std::vector<at::Tensor> io{buffer};
  return group.allreduce(io, comm::ReduceOp::sum);
}

// Reduces a copy of the buffer in `wire_type` and casts the sum back into the buffer.
CommHook compress_to(at::ScalarType wire_type) {
  return [wire_type](comm::Group& group, const GradBucket& bucket) {
    if (bucket.buffer.scalar_type() == wire_type) return allreduce_in_place(group, bucket.buffer);
    at::Tensor wire = bucket.buffer.to(wire_type);
    return allreduce_in_place(group, wire).then([buffer = bucket.buffer, wire] { buffer.copy_(wire); });
  };
}

}  // namespace

namespace hooks {

CommHook allreduce() {
  return [](comm::Group& group, const GradBucket& bucket) { return allreduce_in_place(group, bucket.buffer); };
}

CommHook fp16_compress() { return compress_to(at::kHalf); }

CommHook bf16_compress() {
  // Gloo's allreduce in libtorch 1.13 handles float, double, half and the integer types
  // only; a bf16 bucket would fail with "Invalid scalar type" on every rank.
  LOOM_THROW(ConfigError,
             "bf16 gradient compression needs bfloat16 allreduce, which Gloo in libtorch 1.13 does not support; use "
             "fp16");
}

}  // namespace hooks

namespace {
constexpr Choice<Compression> kCompressions[] = {
    {"none", Compression::none}, {"fp16", Compression::fp16}, {"bf16", Compression::bf16}};
}  // namespace

const char* to_string(Compression compression) { return choice_name(compression, kCompressions); }

Compression parse_compression(const std::string& name) { return parse_choice("grad-compression", name, kCompressions); }

CommHook hook_for(Compression compression) {
  switch (compression) {
    case Compression::none: return hooks::allreduce();
    case Compression::fp16: return hooks::fp16_compress();
    case Compression::bf16: return hooks::bf16_compress();
  }
  return hooks::allreduce();
}

}  // namespace loom::dp
