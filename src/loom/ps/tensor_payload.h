// Tensors on the parameter server's wire: a contiguous f32 tensor travels as its raw
// bytes in the payload frame, its shape in the header. No copy on send (the payload
// keeps the tensor alive); one memcpy on receive, into a buffer the caller reuses.
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

#include "loom/ps/message.h"
#include "loom/ps/protocol.h"

namespace loom::ps {

// Fills h.dtype / ndim / shape / payload_bytes from `t` (contiguous f32, at most
// kMaxDims dims: ConfigError otherwise) and returns a payload over t's bytes that keeps
// t's storage alive until ZeroMQ has sent it. `t` must not change until then.
Payload tensor_payload(const at::Tensor& t, Header& h);

// The header's shape as a vector (ndim entries).
std::vector<int64_t> header_shape(const Header& h);

// The payload as a float32 tensor of `shape`, without a copy when its bytes are aligned
// for float (the tensor then keeps the payload's owner, e.g. the ZeroMQ message, alive),
// else a copy. ProtocolError when the size does not match.
at::Tensor payload_as_float_tensor(const Payload& payload, at::IntArrayRef shape);

// Copies the payload's bytes into `dst` (contiguous, exactly payload.size bytes:
// ProtocolError otherwise). The payload may be unaligned.
void copy_payload(const Payload& payload, const at::Tensor& dst);

}  // namespace loom::ps
