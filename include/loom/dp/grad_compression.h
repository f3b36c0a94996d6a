// Gradient compression for the data-parallel allreduce: a bucket is cast to a 16-bit
// type for the wire and the result is cast back into the fp32 bucket.
//
// fp16: Gloo sums kHalf natively. bf16: Gloo in libtorch 1.13 rejects kBFloat16 in
// allreduce ("Invalid scalar type"), so check_supported() turns it into a ConfigError up
// front rather than a communication failure in the middle of the first backward.
#pragma once

#include <c10/core/ScalarType.h>

#include <optional>
#include <string>

namespace loom::dp {

enum class Compression { none, fp16, bf16 };

const char* to_string(Compression compression);
// "none" | "fp16" | "bf16"; anything else is a ConfigError.
Compression parse_compression(const std::string& name);

// The dtype a bucket travels in, or nullopt when uncompressed.
std::optional<at::ScalarType> wire_dtype(Compression compression);

// Throws ConfigError when the communication backend cannot reduce this compression's
// wire dtype (bf16 with Gloo in libtorch 1.13).
void check_supported(Compression compression);

}  // namespace loom::dp
