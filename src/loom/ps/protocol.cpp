#include "loom/ps/protocol.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "loom/core/error.h"

namespace loom::ps {

namespace {

// Byte offsets of the fields (see the layout in protocol.h).
constexpr size_t kOffMagic = 0;
constexpr size_t kOffVersion = 4;
constexpr size_t kOffOp = 6;
constexpr size_t kOffDType = 7;
constexpr size_t kOffNdim = 8;
constexpr size_t kOffReserved1 = 9;  // 3 bytes
constexpr size_t kOffWorker = 12;
constexpr size_t kOffKey = 16;
constexpr size_t kOffSeq = 24;
constexpr size_t kOffClock = 32;
constexpr size_t kOffWeight = 40;
constexpr size_t kOffFlags = 48;
constexpr size_t kOffReserved2 = 52;  // 4 bytes
constexpr size_t kOffShape = 56;
constexpr size_t kOffPayloadBytes = kOffShape + 8 * kMaxDims;
static_assert(kOffPayloadBytes + 8 == kHeaderBytes, "header layout and kHeaderBytes disagree");
constexpr size_t kPrefixBytes = kOffVersion + 2;  // magic + version: checked before the size

template <typename T>
void put(uint8_t* out, size_t offset, T value) {
  static_assert(std::is_unsigned_v<T>);
  for (size_t i = 0; i < sizeof(T); ++i) out[offset + i] = static_cast<uint8_t>(value >> (8 * i));
}

template <typename T>
T get(const uint8_t* in, size_t offset) {
  static_assert(std::is_unsigned_v<T>);
  T value = 0;
  for (size_t i = 0; i < sizeof(T); ++i) value |= static_cast<T>(static_cast<T>(in[offset + i]) << (8 * i));
  return value;
}

uint64_t double_bits(double d) {
  uint64_t bits;
  std::memcpy(&bits, &d, sizeof bits);
  return bits;
}
double bits_double(uint64_t bits) {
  double d;
  std::memcpy(&d, &bits, sizeof d);
  return d;
}

std::string shape_string(const Header& h) {
  std::string s = "[";
  const int n = h.ndim <= kMaxDims ? h.ndim : kMaxDims;
  for (int i = 0; i < n; ++i) s += fmt::format("{}{}", i ? ", " : "", h.shape[i]);
  return s + "]";
}

}  // namespace

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::none: return 0;
    case DType::f32: return 4;
    case DType::f64: return 8;
    case DType::f16: return 2;
    case DType::bf16: return 2;
    case DType::i64: return 8;
    case DType::i32: return 4;
    case DType::u8: return 1;
  }
  return 0;
}

std::string op_name(Op op) {
  switch (op) {
    case Op::hello: return "hello";
    case Op::hello_ack: return "hello_ack";
    case Op::push: return "push";
    case Op::push_ack: return "push_ack";
    case Op::pull: return "pull";
    case Op::pull_reply: return "pull_reply";
    case Op::error: return "error";
    case Op::clock: return "clock";
    case Op::clock_ack: return "clock_ack";
    case Op::command: return "command";
    case Op::command_ack: return "command_ack";
  }
  return fmt::format("op({})", static_cast<unsigned>(op));
}

std::string dtype_name(DType dtype) {
  switch (dtype) {
    case DType::none: return "none";
    case DType::f32: return "f32";
    case DType::f64: return "f64";
    case DType::f16: return "f16";
    case DType::bf16: return "bf16";
    case DType::i64: return "i64";
    case DType::i32: return "i32";
    case DType::u8: return "u8";
  }
  return fmt::format("dtype({})", static_cast<unsigned>(dtype));
}

Limits limits_for_slices(int64_t slice_bytes) {
  Limits limits;
  limits.max_payload_bytes =
      std::max<uint64_t>(slice_bytes > 0 ? static_cast<uint64_t>(slice_bytes) : 0, kMinPayloadLimit);
  return limits;
}

bool operator==(const Header& a, const Header& b) {
  return a.version == b.version && a.op == b.op && a.dtype == b.dtype && a.ndim == b.ndim && a.worker == b.worker &&
         a.key == b.key && a.seq == b.seq && a.clock == b.clock && a.weight == b.weight && a.flags == b.flags &&
         a.shape == b.shape && a.payload_bytes == b.payload_bytes;
}

void encode_header(const Header& h, uint8_t* out) {
  std::memset(out, 0, kHeaderBytes);
  put<uint32_t>(out, kOffMagic, kMagic);
  put<uint16_t>(out, kOffVersion, h.version);
  put<uint8_t>(out, kOffOp, static_cast<uint8_t>(h.op));
  put<uint8_t>(out, kOffDType, static_cast<uint8_t>(h.dtype));
  put<uint8_t>(out, kOffNdim, h.ndim);
  put<uint32_t>(out, kOffWorker, h.worker);
  put<uint64_t>(out, kOffKey, h.key);
  put<uint64_t>(out, kOffSeq, h.seq);
  put<uint64_t>(out, kOffClock, static_cast<uint64_t>(h.clock));
  put<uint64_t>(out, kOffWeight, double_bits(h.weight));
  put<uint32_t>(out, kOffFlags, h.flags);
  for (int i = 0; i < kMaxDims; ++i) put<uint64_t>(out, kOffShape + 8 * i, static_cast<uint64_t>(h.shape[i]));
  put<uint64_t>(out, kOffPayloadBytes, h.payload_bytes);
}

uint64_t tensor_bytes(const Header& h) {
  LOOM_CHECK(h.ndim <= kMaxDims, ProtocolError, "ndim {} exceeds the maximum of {} dimensions", h.ndim, kMaxDims);
  if (h.dtype == DType::none) return 0;
  uint64_t bytes = dtype_size(h.dtype);
  for (int i = 0; i < h.ndim; ++i) {
    LOOM_CHECK(h.shape[i] >= 0, ProtocolError, "negative dimension shape[{}] = {}", i, h.shape[i]);
    if (__builtin_mul_overflow(bytes, static_cast<uint64_t>(h.shape[i]), &bytes)) {
      LOOM_THROW(ProtocolError, "shape {} of {} overflows a 64-bit byte count", shape_string(h), dtype_name(h.dtype));
    }
  }
  return bytes;
}

void check_header(const Header& h, const Limits& limits) {
  LOOM_CHECK(h.version == kProtocolVersion, ProtocolError, "protocol version {}, this process speaks {}", h.version,
             kProtocolVersion);
  const auto op = static_cast<uint8_t>(h.op);
  LOOM_CHECK(op >= 1 && op <= kMaxOp, ProtocolError, "unknown op {}", op);
  const auto dtype = static_cast<uint8_t>(h.dtype);
  LOOM_CHECK(dtype <= kMaxDType, ProtocolError, "unknown dtype {}", dtype);
  LOOM_CHECK(h.ndim <= kMaxDims, ProtocolError, "ndim {} exceeds the maximum of {} dimensions", h.ndim, kMaxDims);
  for (int i = 0; i < kMaxDims; ++i) {
    if (i < h.ndim) {
      LOOM_CHECK(h.shape[i] >= 0, ProtocolError, "negative dimension shape[{}] = {}", i, h.shape[i]);
    } else {
      LOOM_CHECK(h.shape[i] == 0, ProtocolError, "shape[{}] = {} lies beyond ndim {}", i, h.shape[i], h.ndim);
    }
  }
  LOOM_CHECK(h.dtype != DType::none || h.ndim == 0, ProtocolError,
             "a shape {} without a dtype (dtype none needs ndim 0)", shape_string(h));
  LOOM_CHECK(std::isfinite(h.weight), ProtocolError, "weight {} is not finite", h.weight);
  LOOM_CHECK(h.payload_bytes <= limits.max_payload_bytes, ProtocolError, "message of {} bytes exceeds the limit of {}",
             h.payload_bytes, limits.max_payload_bytes);
  if (h.dtype != DType::none) {
    const uint64_t expected = tensor_bytes(h);
    LOOM_CHECK(expected == h.payload_bytes, ProtocolError,
               "shape {} of {} is {} bytes but the header declares {} payload bytes", shape_string(h),
               dtype_name(h.dtype), expected, h.payload_bytes);
  }
}

Header decode_header(const uint8_t* data, size_t size, const Limits& limits) {
  LOOM_CHECK(data != nullptr || size == 0, ProtocolError, "header frame without data");
  LOOM_CHECK(size >= kPrefixBytes, ProtocolError, "truncated header: {} bytes, a header is {}", size, kHeaderBytes);
  const uint32_t magic = get<uint32_t>(data, kOffMagic);
  LOOM_CHECK(magic == kMagic, ProtocolError, "bad magic 0x{:08x} (not a loom message)", magic);
  const uint16_t version = get<uint16_t>(data, kOffVersion);
  LOOM_CHECK(version == kProtocolVersion, ProtocolError, "protocol version {}, this process speaks {}", version,
             kProtocolVersion);
  LOOM_CHECK(size >= kHeaderBytes, ProtocolError, "truncated header: {} bytes, a header is {}", size, kHeaderBytes);
  LOOM_CHECK(size == kHeaderBytes, ProtocolError, "header frame of {} bytes has {} extra bytes (a header is {})", size,
             size - kHeaderBytes, kHeaderBytes);

  for (size_t i = 0; i < 3; ++i) {
    LOOM_CHECK(data[kOffReserved1 + i] == 0, ProtocolError, "reserved header byte {} is not zero", kOffReserved1 + i);
  }
  for (size_t i = 0; i < 4; ++i) {
    LOOM_CHECK(data[kOffReserved2 + i] == 0, ProtocolError, "reserved header byte {} is not zero", kOffReserved2 + i);
  }

  Header h;
  h.version = version;
  // Any byte is a valid value of these uint8_t-based enums; check_header rejects the
  // ones outside the enumerators.
  h.op = static_cast<Op>(get<uint8_t>(data, kOffOp));
  h.dtype = static_cast<DType>(get<uint8_t>(data, kOffDType));
  h.ndim = get<uint8_t>(data, kOffNdim);
  h.worker = get<uint32_t>(data, kOffWorker);
  h.key = get<uint64_t>(data, kOffKey);
  h.seq = get<uint64_t>(data, kOffSeq);
  h.clock = static_cast<int64_t>(get<uint64_t>(data, kOffClock));
  h.weight = bits_double(get<uint64_t>(data, kOffWeight));
  h.flags = get<uint32_t>(data, kOffFlags);
  for (int i = 0; i < kMaxDims; ++i) h.shape[i] = static_cast<int64_t>(get<uint64_t>(data, kOffShape + 8 * i));
  h.payload_bytes = get<uint64_t>(data, kOffPayloadBytes);
  check_header(h, limits);
  return h;
}

void check_payload(const Header& h, size_t actual_payload_bytes) {
  LOOM_CHECK(actual_payload_bytes == h.payload_bytes, ProtocolError, "payload of {} bytes, the header declares {}",
             actual_payload_bytes, h.payload_bytes);
}

std::string describe(const Header& h) {
  std::string s = fmt::format("{} worker {} key {} seq {} clock {}", op_name(h.op), h.worker, h.key, h.seq, h.clock);
  if (h.dtype != DType::none) s += fmt::format(" {}{}", dtype_name(h.dtype), shape_string(h));
  s += fmt::format(" {} bytes", h.payload_bytes);
  if (h.weight != 0) s += fmt::format(" weight {}", h.weight);
  if (h.flags != 0) s += fmt::format(" flags {:#x}", h.flags);
  if (h.version != kProtocolVersion) s += fmt::format(" version {}", h.version);
  return s;
}

}  // namespace loom::ps
