// libFuzzer target for the parameter server's message decoder (loom/ps/protocol.h).
//
// Any input must either decode or raise loom::ProtocolError; anything else (another
// exception, a sanitizer report, a failed invariant below) is a crash. Invariants:
// a header that decodes re-encodes to exactly the input bytes, its tensor size is the
// declared payload size, and it is within the limit it was decoded with.
//
// Built and run by `make fuzz` (a separate clang build, see fuzz/CMakeLists.txt).
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "loom/core/error.h"
#include "loom/ps/protocol.h"

namespace {

using loom::ps::Header;
using loom::ps::kHeaderBytes;
using loom::ps::Limits;

void check(bool ok) {
  if (!ok) std::abort();
}

void exercise(const uint8_t* data, size_t size, const Limits& limits, size_t payload_bytes) {
  try {
    const Header h = loom::ps::decode_header(data, size, limits);
    check(size == kHeaderBytes);
    uint8_t again[kHeaderBytes];
    loom::ps::encode_header(h, again);
    check(std::memcmp(again, data, kHeaderBytes) == 0);
    check(h.payload_bytes <= limits.max_payload_bytes);
    if (h.dtype != loom::ps::DType::none) check(loom::ps::tensor_bytes(h) == h.payload_bytes);
    (void)loom::ps::describe(h);
    loom::ps::check_payload(h, payload_bytes);
    check(payload_bytes == h.payload_bytes);
  } catch (const loom::ProtocolError&) {
    // the expected way to refuse input
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The whole input as a header frame (exercises the size checks) ...
  exercise(data, size, Limits{}, 0);
  // ... and as a header frame followed by a payload frame of the remaining bytes, with
  // the default limit and a small one.
  if (size >= kHeaderBytes) {
    exercise(data, kHeaderBytes, Limits{}, size - kHeaderBytes);
    exercise(data, kHeaderBytes, Limits{64}, size - kHeaderBytes);
  }
  return 0;
}
