#include "loom/dp/grad_compression.h"

#include "loom/core/error.h"

namespace loom::dp {

const char* to_string(Compression compression) {
  switch (compression) {
    case Compression::none: return "none";
    case Compression::fp16: return "fp16";
    case Compression::bf16: return "bf16";
  }
  return "none";
}

Compression parse_compression(const std::string& name) {
  if (name == "none") return Compression::none;
  if (name == "fp16") return Compression::fp16;
  if (name == "bf16") return Compression::bf16;
  LOOM_THROW(ConfigError, "unknown gradient compression '{}' (expected none, fp16 or bf16)", name);
}

std::optional<at::ScalarType> wire_dtype(Compression compression) {
  switch (compression) {
    case Compression::none: return std::nullopt;
    case Compression::fp16: return at::kHalf;
    case Compression::bf16: return at::kBFloat16;
  }
  return std::nullopt;
}

void check_supported(Compression compression) {
  // Gloo's allreduce in libtorch 1.13 handles float, double, half and the integer types
  // only; a bf16 bucket would fail with "Invalid scalar type" on every rank.
  LOOM_CHECK(compression != Compression::bf16, ConfigError,
             "bf16 gradient compression needs bfloat16 allreduce, which Gloo in libtorch 1.13 does not "
             "support; use fp16");
}

}  // namespace loom::dp
