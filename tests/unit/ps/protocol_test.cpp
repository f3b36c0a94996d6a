#include "loom/ps/protocol.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "loom/core/error.h"

namespace {

using loom::ps::DType;
using loom::ps::Header;
using loom::ps::kHeaderBytes;
using loom::ps::Limits;
using loom::ps::Op;

Header valid_push() {
  Header h;
  h.op = Op::push;
  h.dtype = DType::f32;
  h.ndim = 2;
  h.shape[0] = 3;
  h.shape[1] = 4;
  h.worker = 2;
  h.key = 11;
  h.seq = 5;
  h.clock = 9;
  h.weight = 0.5;
  h.payload_bytes = 3 * 4 * 4;
  return h;
}

std::vector<uint8_t> encode(const Header& h) {
  std::vector<uint8_t> bytes(kHeaderBytes);
  loom::ps::encode_header(h, bytes.data());
  return bytes;
}

// The ProtocolError message of decoding `bytes`, or "" when it decodes.
std::string decode_error(const std::vector<uint8_t>& bytes, const Limits& limits = {}) {
  try {
    loom::ps::decode_header(bytes.data(), bytes.size(), limits);
  } catch (const loom::ProtocolError& e) {
    return e.what();
  }
  return "";
}

std::string decode_error(const Header& h, const Limits& limits = {}) { return decode_error(encode(h), limits); }

void put_u64(std::vector<uint8_t>& bytes, size_t offset, uint64_t v) {
  for (int i = 0; i < 8; ++i) bytes[offset + i] = static_cast<uint8_t>(v >> (8 * i));
}

TEST(Protocol, RoundTripsEveryFieldAtAnyAlignment) {
  Header h;
  h.op = Op::pull_reply;
  h.dtype = DType::f64;
  h.ndim = 8;
  for (int i = 0; i < 8; ++i) h.shape[i] = i + 1;  // 40320 elements
  h.worker = 0xDEADBEEF;
  h.key = 0x0123456789ABCDEFull;
  h.seq = std::numeric_limits<uint64_t>::max();
  h.clock = -42;
  h.weight = 0.1234567890123;
  h.flags = 0xA5A5A5A5;
  h.payload_bytes = 40320 * 8;

  std::vector<uint8_t> buffer(kHeaderBytes + 3);
  for (size_t misalign = 0; misalign < 3; ++misalign) {
    loom::ps::encode_header(h, buffer.data() + misalign);
    const Header back = loom::ps::decode_header(buffer.data() + misalign, kHeaderBytes, Limits{});
    EXPECT_EQ(back.version, loom::ps::kProtocolVersion);
    EXPECT_EQ(back.op, h.op);
    EXPECT_EQ(back.dtype, h.dtype);
    EXPECT_EQ(back.ndim, h.ndim);
    EXPECT_EQ(back.worker, h.worker);
    EXPECT_EQ(back.key, h.key);
    EXPECT_EQ(back.seq, h.seq);
    EXPECT_EQ(back.clock, h.clock);
    EXPECT_EQ(back.weight, h.weight);
    EXPECT_EQ(back.flags, h.flags);
    EXPECT_EQ(back.shape, h.shape);
    EXPECT_EQ(back.payload_bytes, h.payload_bytes);
    EXPECT_TRUE(back == h);
  }
}

TEST(Protocol, LayoutIsLittleEndianWithTheMagicFirst) {
  const std::vector<uint8_t> bytes = encode(valid_push());
  EXPECT_EQ(std::string(bytes.begin(), bytes.begin() + 4), "LOOM");
  EXPECT_EQ(bytes[4], 1);  // version, low byte first
  EXPECT_EQ(bytes[5], 0);
  EXPECT_EQ(bytes[6], static_cast<uint8_t>(Op::push));
  EXPECT_EQ(bytes[7], static_cast<uint8_t>(DType::f32));
  EXPECT_EQ(bytes[8], 2);     // ndim
  EXPECT_EQ(bytes[12], 2);    // worker
  EXPECT_EQ(bytes[16], 11);   // key
  EXPECT_EQ(bytes[56], 3);    // shape[0]
  EXPECT_EQ(bytes[64], 4);    // shape[1]
  EXPECT_EQ(bytes[120], 48);  // payload_bytes
  EXPECT_EQ(kHeaderBytes, 128u);
}

TEST(Protocol, RoundTripsEveryOpAndDType) {
  for (int op = 1; op <= static_cast<int>(Op::command_ack); ++op) {
    for (int dt = 0; dt <= static_cast<int>(DType::u8); ++dt) {
      Header h;
      h.op = static_cast<Op>(op);
      h.dtype = static_cast<DType>(dt);
      if (h.dtype != DType::none) {
        h.ndim = 1;
        h.shape[0] = 5;
      }
      h.payload_bytes = h.dtype == DType::none ? 17 : 5 * loom::ps::dtype_size(h.dtype);
      const std::vector<uint8_t> bytes = encode(h);
      EXPECT_TRUE(loom::ps::decode_header(bytes.data(), bytes.size(), Limits{}) == h) << loom::ps::describe(h);
    }
  }
}

TEST(Protocol, DTypeSizes) {
  EXPECT_EQ(loom::ps::dtype_size(DType::none), 0u);
  EXPECT_EQ(loom::ps::dtype_size(DType::f32), 4u);
  EXPECT_EQ(loom::ps::dtype_size(DType::f64), 8u);
  EXPECT_EQ(loom::ps::dtype_size(DType::f16), 2u);
  EXPECT_EQ(loom::ps::dtype_size(DType::bf16), 2u);
  EXPECT_EQ(loom::ps::dtype_size(DType::i64), 8u);
  EXPECT_EQ(loom::ps::dtype_size(DType::i32), 4u);
  EXPECT_EQ(loom::ps::dtype_size(DType::u8), 1u);
  EXPECT_EQ(loom::ps::dtype_size(static_cast<DType>(99)), 0u);
}

TEST(Protocol, ScalarAndEmptyTensors) {
  Header scalar;
  scalar.op = Op::push;
  scalar.dtype = DType::f32;
  scalar.payload_bytes = 4;  // ndim 0: one element
  EXPECT_EQ(decode_error(scalar), "");
  Header empty = scalar;
  empty.ndim = 2;
  empty.shape[0] = 0;
  empty.shape[1] = 7;
  empty.payload_bytes = 0;
  EXPECT_EQ(decode_error(empty), "");
}

TEST(Protocol, RejectsTruncatedHeader) {
  std::vector<uint8_t> bytes = encode(valid_push());
  bytes.resize(100);
  EXPECT_EQ(decode_error(bytes), "truncated header: 100 bytes, a header is 128");
  bytes.resize(3);
  EXPECT_EQ(decode_error(bytes), "truncated header: 3 bytes, a header is 128");
  EXPECT_EQ(decode_error(std::vector<uint8_t>{}), "truncated header: 0 bytes, a header is 128");
}

TEST(Protocol, RejectsExtraBytes) {
  std::vector<uint8_t> bytes = encode(valid_push());
  bytes.push_back(0);
  EXPECT_EQ(decode_error(bytes), "header frame of 129 bytes has 1 extra bytes (a header is 128)");
}

TEST(Protocol, RejectsBadMagic) {
  std::vector<uint8_t> bytes = encode(valid_push());
  bytes[0] = 'X';
  EXPECT_EQ(decode_error(bytes), "bad magic 0x4d4f4f58 (not a loom message)");
  const std::string http = "GET / HTTP/1.1\r\n";
  EXPECT_NE(decode_error(std::vector<uint8_t>(http.begin(), http.end())).find("bad magic"), std::string::npos);
}

TEST(Protocol, RejectsWrongVersionBeforeTheSize) {
  Header h = valid_push();
  h.version = 7;
  EXPECT_EQ(decode_error(h), "protocol version 7, this process speaks 1");
  // A future version with a longer header is told about the version, not the size.
  std::vector<uint8_t> longer = encode(h);
  longer.resize(200);
  EXPECT_EQ(decode_error(longer), "protocol version 7, this process speaks 1");
}

TEST(Protocol, RejectsUnknownOp) {
  Header h = valid_push();
  h.op = static_cast<Op>(0);
  EXPECT_EQ(decode_error(h), "unknown op 0");
  h.op = static_cast<Op>(12);
  EXPECT_EQ(decode_error(h), "unknown op 12");
  h.op = static_cast<Op>(255);
  EXPECT_EQ(decode_error(h), "unknown op 255");
}

TEST(Protocol, RejectsUnknownDType) {
  Header h = valid_push();
  h.dtype = static_cast<DType>(8);
  EXPECT_EQ(decode_error(h), "unknown dtype 8");
}

TEST(Protocol, RejectsTooManyDims) {
  Header h = valid_push();
  h.ndim = 9;
  EXPECT_EQ(decode_error(h), "ndim 9 exceeds the maximum of 8 dimensions");
  h.ndim = 255;
  EXPECT_EQ(decode_error(h), "ndim 255 exceeds the maximum of 8 dimensions");
}

TEST(Protocol, RejectsNegativeDim) {
  Header h = valid_push();
  h.shape[1] = -4;
  EXPECT_EQ(decode_error(h), "negative dimension shape[1] = -4");
  h.shape[1] = std::numeric_limits<int64_t>::min();
  EXPECT_EQ(decode_error(h), "negative dimension shape[1] = -9223372036854775808");
}

TEST(Protocol, RejectsDimsBeyondNdim) {
  Header h = valid_push();
  h.shape[5] = 3;
  EXPECT_EQ(decode_error(h), "shape[5] = 3 lies beyond ndim 2");
}

TEST(Protocol, RejectsShapeWithoutDType) {
  Header h = valid_push();
  h.dtype = DType::none;
  EXPECT_EQ(decode_error(h), "a shape [3, 4] without a dtype (dtype none needs ndim 0)");
}

TEST(Protocol, RejectsShapePayloadMismatch) {
  Header h = valid_push();
  h.payload_bytes = 44;
  EXPECT_EQ(decode_error(h), "shape [3, 4] of f32 is 48 bytes but the header declares 44 payload bytes");
  h.payload_bytes = 0;
  EXPECT_EQ(decode_error(h), "shape [3, 4] of f32 is 48 bytes but the header declares 0 payload bytes");
}

TEST(Protocol, RejectsSizeOverTheLimit) {
  Header h;
  h.op = Op::push;
  h.dtype = DType::u8;
  h.ndim = 1;
  h.shape[0] = 4096;
  h.payload_bytes = 4096;
  EXPECT_EQ(decode_error(h, Limits{1024}), "message of 4096 bytes exceeds the limit of 1024");
  EXPECT_EQ(decode_error(h, Limits{4096}), "");
  // A raw (dtype none) payload is bounded by the limit too, with the default limit (2 GiB).
  Header raw;
  raw.op = Op::command;
  raw.payload_bytes = uint64_t{1} << 40;
  EXPECT_EQ(decode_error(raw), "message of 1099511627776 bytes exceeds the limit of 2147483648");
}

TEST(Protocol, RejectsShapeWhoseByteCountOverflows) {
  Header h = valid_push();
  h.ndim = 3;
  h.shape = {int64_t{1} << 40, int64_t{1} << 40, 1};
  h.payload_bytes = 16;  // under the limit: the overflow itself must be caught
  EXPECT_EQ(decode_error(h), "shape [1099511627776, 1099511627776, 1] of f32 overflows a 64-bit byte count");
  // Element count fits in 64 bits, but times the dtype size it does not.
  h.ndim = 1;
  h.shape = {int64_t{1} << 62};
  EXPECT_EQ(decode_error(h), "shape [4611686018427387904] of f32 overflows a 64-bit byte count");
  // Overflowing to exactly the declared size must not pass: 2^62 * 4 wraps to 0.
  h.payload_bytes = 0;
  EXPECT_EQ(decode_error(h), "shape [4611686018427387904] of f32 overflows a 64-bit byte count");
}

TEST(Protocol, RejectsNonFiniteWeight) {
  Header h = valid_push();
  h.weight = std::nan("");
  EXPECT_EQ(decode_error(h), "weight nan is not finite");
  h.weight = -std::numeric_limits<double>::infinity();
  EXPECT_EQ(decode_error(h), "weight -inf is not finite");
}

TEST(Protocol, RejectsNonZeroReservedBytes) {
  std::vector<uint8_t> bytes = encode(valid_push());
  bytes[10] = 1;
  EXPECT_EQ(decode_error(bytes), "reserved header byte 10 is not zero");
  bytes = encode(valid_push());
  bytes[55] = 0x80;
  EXPECT_EQ(decode_error(bytes), "reserved header byte 55 is not zero");
}

TEST(Protocol, RejectsCraftedPayloadBytesFieldOverTheLimit) {
  std::vector<uint8_t> bytes = encode(Header{});
  put_u64(bytes, 120, std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(decode_error(bytes), "message of 18446744073709551615 bytes exceeds the limit of 2147483648");
}

TEST(Protocol, CheckPayload) {
  const Header h = valid_push();
  EXPECT_NO_THROW(loom::ps::check_payload(h, 48));
  try {
    loom::ps::check_payload(h, 47);
    FAIL() << "no throw";
  } catch (const loom::ProtocolError& e) {
    EXPECT_STREQ(e.what(), "payload of 47 bytes, the header declares 48");
  }
  EXPECT_THROW(loom::ps::check_payload(h, 0), loom::ProtocolError);
}

TEST(Protocol, CheckHeaderValidatesHeadersBuiltInMemory) {
  EXPECT_NO_THROW(loom::ps::check_header(valid_push(), Limits{}));
  Header h = valid_push();
  h.payload_bytes = 1;
  EXPECT_THROW(loom::ps::check_header(h, Limits{}), loom::ProtocolError);
  EXPECT_EQ(loom::ps::tensor_bytes(valid_push()), 48u);
}

TEST(Protocol, Describe) {
  const std::string s = loom::ps::describe(valid_push());
  EXPECT_EQ(s, "push worker 2 key 11 seq 5 clock 9 f32[3, 4] 48 bytes weight 0.5");
  EXPECT_EQ(loom::ps::op_name(static_cast<Op>(42)), "op(42)");
  EXPECT_EQ(loom::ps::dtype_name(DType::bf16), "bf16");
}

// A small in-test fuzz: every byte of a valid header set to a few values either decodes
// to a valid header that re-encodes to the same bytes, or is a ProtocolError.
TEST(Protocol, CorruptedBytesDecodeExactlyOrThrowProtocolError) {
  const std::vector<uint8_t> good = encode(valid_push());
  std::mt19937 rng(7);
  int decoded = 0;
  int rejected = 0;
  for (size_t i = 0; i < kHeaderBytes; ++i) {
    for (uint8_t v :
         {uint8_t{0}, uint8_t{1}, uint8_t{0x7f}, uint8_t{0x80}, uint8_t{0xff}, static_cast<uint8_t>(rng())}) {
      std::vector<uint8_t> bytes = good;
      bytes[i] = v;
      try {
        const Header h = loom::ps::decode_header(bytes.data(), bytes.size(), Limits{});
        EXPECT_EQ(encode(h), bytes) << "byte " << i;
        ++decoded;
      } catch (const loom::ProtocolError&) {
        ++rejected;
      }
    }
  }
  EXPECT_GT(decoded, 0);
  EXPECT_GT(rejected, 0);
}

}  // namespace
