// The parameter server's wire format: one fixed-size, little-endian binary header per
// message, followed (in its own frame, see van.h) by the payload bytes.
//
// Layout of the kHeaderBytes = 128 header bytes (all integers little-endian, encoded and
// decoded field by field, so the byte order and alignment of the host do not matter):
//
//   offset size  field
//        0    4  magic          kMagic: the bytes 'L' 'O' 'O' 'M'
//        4    2  version        kProtocolVersion
//        6    1  op             Op
//        7    1  dtype          DType of the payload's elements (none: raw bytes)
//        8    1  ndim           number of dimensions used in shape, <= kMaxDims
//        9    3  reserved       zero
//       12    4  worker         sender's worker id
//       16    8  key            tensor slice key
//       24    8  seq            request sequence number, echoed in the reply
//       32    8  clock          worker's clock (step), signed
//       40    8  weight         IEEE-754 binary64: a push's share of the global batch
//       48    4  flags          for the layers above; not interpreted here
//       52    4  reserved       zero
//       56   64  shape          kMaxDims signed 64-bit dims; those past ndim are zero
//      120    8  payload_bytes  size of the payload frame
//
// Contract of a valid header (decode_header and check_header enforce all of it, before
// loom allocates anything for the payload; ZeroMQ has already received the frames, each
// within ZMQ_MAXMSGSIZE, see van.h): the magic and version match; op and dtype are
// known; ndim <= kMaxDims; dims are >= 0 and those past ndim are 0; weight is finite;
// payload_bytes <= Limits::max_payload_bytes; with a dtype, the payload is exactly the
// tensor (product of the ndim dims, 1 for ndim 0, times dtype_size) and with
// DType::none there is no shape (ndim 0) and the payload is opaque bytes (an error's
// reason, a token, a command).
//
// Everything here is a pure function of its arguments: thread-safe, no allocation except
// for the strings of describe() and of the errors. Errors are loom::ProtocolError with a
// one-line message naming the problem.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

#include "loom/ps/van_options.h"

namespace loom::ps {

constexpr uint32_t kMagic = 0x4D4F4F4C;  // 'LOOM' as little-endian bytes
constexpr uint16_t kProtocolVersion = 1;
constexpr int kMaxDims = 8;

enum class Op : uint8_t {
  hello = 1,  // worker -> server: handshake; payload = the shared token (may be empty)
  hello_ack,  // server -> worker: handshake accepted; key = the server's Limits::max_payload_bytes
  push,
  push_ack,
  pull,
  pull_reply,
  error,  // a rejection: payload = the one-line reason (DType::none)
  clock,
  clock_ack,
  command,
  command_ack,
};
constexpr uint8_t kMaxOp = static_cast<uint8_t>(Op::command_ack);

enum class DType : uint8_t { none = 0, f32, f64, f16, bf16, i64, i32, u8 };
constexpr uint8_t kMaxDType = static_cast<uint8_t>(DType::u8);

// Bytes per element; 0 for DType::none and for values outside the enum.
size_t dtype_size(DType dtype);
// "push", "f32"; "op(42)" / "dtype(42)" for values outside the enums.
std::string op_name(Op op);
std::string dtype_name(DType dtype);

struct Header {
  uint16_t version = kProtocolVersion;
  Op op = Op::hello;
  DType dtype = DType::none;
  uint8_t ndim = 0;
  uint32_t worker = 0;  // sender's worker id
  uint64_t key = 0;     // tensor slice key
  uint64_t seq = 0;     // request sequence number, echoed in the reply
  int64_t clock = 0;    // worker's clock (step) for push/pull/clock
  double weight = 0;    // push: this worker's share of the global batch
  uint32_t flags = 0;
  std::array<int64_t, kMaxDims> shape{};
  uint64_t payload_bytes = 0;
};

// Field-wise equality (weight compared as a double).
bool operator==(const Header& a, const Header& b);
inline bool operator!=(const Header& a, const Header& b) { return !(a == b); }

constexpr size_t kHeaderBytes = 128;

// Writes exactly kHeaderBytes to `out` (any alignment). Writes the fields as given, even
// invalid ones (so tests can craft bad headers): validate with check_header first when
// the header comes from somewhere untrusted. Never throws.
void encode_header(const Header& header, uint8_t* out);

// Parses and validates a header frame of `size` bytes (any alignment). Throws
// ProtocolError when the frame is not exactly one valid header (see the contract above);
// magic and version are checked before the size, so a peer speaking another version is
// told so rather than "extra bytes".
Header decode_header(const uint8_t* data, size_t size, const Limits& limits);

// Validates a header built in memory (the checks of decode_header that apply to fields).
// Throws ProtocolError.
void check_header(const Header& header, const Limits& limits);

// Throws ProtocolError unless the received payload frame has header.payload_bytes bytes.
void check_payload(const Header& header, size_t actual_payload_bytes);

// The tensor's byte count from dtype and shape (1 element for ndim 0); 0 for DType::none.
// Throws ProtocolError on overflow, a negative dim or ndim > kMaxDims.
uint64_t tensor_bytes(const Header& header);

// One line for logs: "push worker 1 key 3 seq 7 clock 5 f32[256, 10] 10240 bytes weight 0.5".
std::string describe(const Header& header);

}  // namespace loom::ps
