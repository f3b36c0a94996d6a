// Message limits: ZeroMQ drops a frame over the limit before allocating it, for peers
// with and without a hello; limits follow the slice size.
#include "unit/ps/van_testing.h"

namespace loom::ps {
namespace {

using namespace loom::ps::testing;

// Over TCP, ZeroMQ itself drops a frame over the limit (ZMQ_MAXMSGSIZE) before allocating
// it: the sender's connection is closed, nothing reaches receive(), others are served.
TEST(VanTcp, FrameOverTheLimitIsDroppedByZeroMQ) {
  VanOptions small;
  small.timeout = kWait;
  small.limits.max_payload_bytes = 1024;
  EchoServer server("tcp://127.0.0.1:0", small);
  ZmqClientVan good(server.endpoint(), 0, small);
  ZmqContext context;
  RawSocket raw(context.impl().context.handle(), ZMQ_DEALER);
  raw.connect(server.endpoint());
  raw.send({header_bytes(hello_from(9)), ""});
  ASSERT_TRUE(raw.receive(kWait));
  raw.send({header_bytes(raw_push(9, 1, 1 << 20)), std::string(1 << 20, 'x')});
  EXPECT_FALSE(raw.receive(300ms));

  auto buffer = std::make_shared<std::string>(512, 'y');
  good.send(raw_push(0, 1, buffer->size()), Payload{buffer->data(), buffer->size(), buffer});
  auto reply = good.receive(kWait);
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->payload.bytes(), *buffer);
  EXPECT_EQ(server.failure(), "");
}

// The per-frame bound for peers that have not said hello: ZMQ_MAXMSGSIZE is the
// payload limit (64 KiB for a job of small slices), so a frame of 64 KiB still reaches
// loom (and is refused: no hello), one byte more is dropped by ZeroMQ before it is
// allocated, and a good client goes on being served.
TEST(VanTcp, APeerWithoutHelloCannotMakeZeroMQAllocateAFrameOverTheLimit) {
  VanOptions small;
  small.timeout = kWait;
  small.limits = loom::ps::limits_for_slices(1024);  // raised to the 64 KiB floor
  ASSERT_EQ(small.limits.max_payload_bytes, 64u * 1024);
  EchoServer server("tcp://127.0.0.1:0", small);
  ZmqClientVan good(server.endpoint(), 0, small);
  ZmqContext context;
  const uint64_t limit = small.limits.max_payload_bytes;
  {
    RawSocket raw(context.impl().context.handle(), ZMQ_DEALER);
    raw.connect(server.endpoint());
    raw.send({header_bytes(raw_push(9, 1, limit)), std::string(limit, 'x')});
    expect_error_reply(raw, "push from a peer that has not said hello");
  }
  {
    RawSocket raw(context.impl().context.handle(), ZMQ_DEALER);
    raw.connect(server.endpoint());
    raw.send({header_bytes(raw_push(9, 2, limit + 1)), std::string(limit + 1, 'x')});
    EXPECT_FALSE(raw.receive(300ms)) << "a frame over the limit reached the server";
  }
  EXPECT_EQ(server.rejected(), 1);
  auto buffer = std::make_shared<std::string>(limit, 'y');
  good.send(raw_push(0, 1, buffer->size()), Payload{buffer->data(), buffer->size(), buffer});
  auto reply = good.receive(kWait);
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->payload.bytes(), *buffer);
  EXPECT_EQ(server.failure(), "");
}

TEST(Van, LimitsForSlices) {
  EXPECT_EQ(loom::ps::limits_for_slices(4 << 20).max_payload_bytes, 4u << 20);
  EXPECT_EQ(loom::ps::limits_for_slices(100).max_payload_bytes, loom::ps::kMinPayloadLimit);
  EXPECT_EQ(loom::ps::limits_for_slices(0).max_payload_bytes, loom::ps::kMinPayloadLimit);
}

}  // namespace
}  // namespace loom::ps
