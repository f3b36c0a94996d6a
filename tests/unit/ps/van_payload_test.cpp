// Payloads through the vans: zero-copy both ways, copies when there is no owner, empty
// payloads, error replies, and polling several clients.
#include "unit/ps/van_testing.h"

namespace loom::ps {
namespace {

using namespace loom::ps::testing;

TEST_P(VanTest, FourMiBPushRoundTripsByteExactWithoutCopies) {
  EchoServer server(bind_address(), options());
  ZmqClientVan client(server.endpoint(), 1, options());
  constexpr size_t kBytes = size_t{4} << 20;
  auto buffer = std::make_shared<std::vector<float>>(kBytes / sizeof(float));
  std::mt19937 rng(42);
  std::uniform_real_distribution<float> dist(-1, 1);
  for (float& x : *buffer) x = dist(rng);

  Header h;
  h.op = Op::push;
  h.dtype = DType::f32;
  h.ndim = 2;
  h.shape[0] = 1024;
  h.shape[1] = static_cast<int64_t>(buffer->size() / 1024);
  h.key = 3;
  h.seq = 99;
  h.clock = 12;
  h.weight = 0.25;
  client.send(h, Payload{buffer->data(), kBytes, buffer});

  auto reply = client.receive(kWait);
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->header.op, Op::push_ack);
  EXPECT_EQ(reply->header.seq, 99u);
  EXPECT_EQ(reply->header.key, 3u);
  EXPECT_EQ(reply->header.worker, 1u);  // stamped by the client van
  EXPECT_EQ(reply->header.clock, 12);
  EXPECT_EQ(reply->header.weight, 0.25);
  EXPECT_EQ(reply->header.shape, h.shape);
  ASSERT_EQ(reply->payload.size, kBytes);
  EXPECT_EQ(std::memcmp(reply->payload.data, buffer->data(), kBytes), 0);
  EXPECT_TRUE(zero_copy(reply->payload)) << "client payload is not the received message's bytes";
  EXPECT_TRUE(server.pushes_were_zero_copy()) << "server payload is not the received message's bytes";

  // The van held the sent buffer only until ZeroMQ was done with it.
  reply.reset();
  const auto start = Clock::now();
  while (buffer.use_count() > 1 && elapsed_ms(start) < 2000) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(buffer.use_count(), 1);
  EXPECT_EQ(server.failure(), "");
}

TEST_P(VanTest, PayloadWithoutOwnerIsCopiedAndEmptyPayloadWorks) {
  EchoServer server(bind_address(), options());
  ZmqClientVan client(server.endpoint(), 1, options());
  std::vector<uint8_t> bytes(100, 0xab);
  Header h = raw_push(0, 1, bytes.size());
  client.send(h, Payload{bytes.data(), bytes.size(), nullptr});
  std::fill(bytes.begin(), bytes.end(), 0);  // the van copied: this must not matter
  auto reply = client.receive(kWait);
  ASSERT_TRUE(reply);
  ASSERT_EQ(reply->payload.size, 100u);
  EXPECT_EQ(static_cast<const uint8_t*>(reply->payload.data)[99], 0xab);

  client.send(raw_push(0, 2, 0));
  reply = client.receive(kWait);
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->header.seq, 2u);
  EXPECT_EQ(reply->payload.size, 0u);
}

TEST_P(VanTest, ErrorRepliesAreReturnedToTheClient) {
  RawSocket router(raw_context(), ZMQ_ROUTER);
  router.bind(bind_address());
  const std::string endpoint = router.last_endpoint();
  std::thread fake_server([&] {
    auto hello = router.receive(kWait);
    if (!hello || hello->size() != 3) return;
    Header ack;
    ack.op = Op::hello_ack;
    router.send({(*hello)[0], header_bytes(ack), ""});
    Header error;
    error.op = Op::error;
    error.seq = 8;
    error.payload_bytes = 11;
    router.send({(*hello)[0], header_bytes(error), "unknown key"});
  });
  ZmqClientVan client(endpoint, 2, options());
  fake_server.join();
  auto reply = client.receive(kWait);
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->header.op, Op::error);
  EXPECT_EQ(reply->header.seq, 8u);
  EXPECT_EQ(reply->payload.bytes(), "unknown key");
}

TEST_P(VanTest, PollAnyFindsTheClientWithAReply) {
  EchoServer first(bind_address(), options());
  EchoServer second(bind_address(), options());
  ZmqClientVan a(first.endpoint(), 1, options());
  ZmqClientVan b(second.endpoint(), 1, options());
  const auto start = Clock::now();
  EXPECT_EQ(ZmqClientVan::poll_any({&a, &b}, 100ms), -1);
  EXPECT_GE(elapsed_ms(start), 99);
  b.send(raw_push(0, 1, 0));
  EXPECT_EQ(ZmqClientVan::poll_any({&a, &b}, kWait), 1);
  ASSERT_TRUE(b.receive(0ms));
}

}  // namespace
}  // namespace loom::ps
