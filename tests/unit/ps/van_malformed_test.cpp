// Malformed messages: the server answers each with the reason and goes on serving a
// good client; a malformed reply is a ProtocolError on the client; an invalid header
// never leaves.
#include "unit/ps/van_testing.h"

namespace loom::ps {
namespace {

using namespace loom::ps::testing;

TEST_P(VanTest, MalformedMessagesGetErrorsWhileAGoodClientIsServed) {
  EchoServer server(bind_address(), options());
  ZmqClientVan good(server.endpoint(), 0, options());
  RawSocket raw(raw_context(), ZMQ_DEALER);
  raw.connect(server.endpoint());
  raw.send({header_bytes(hello_from(5)), ""});
  ASSERT_TRUE(raw.receive(kWait));  // hello_ack
  uint64_t seq = 0;
  round_trip(good, ++seq);

  raw.send({"garbage"});
  expect_error_reply(raw, "expected 2 frames (header, payload), got 1");
  round_trip(good, ++seq);

  raw.send({"not a loom header at all, but long enough to have a magic", ""});
  expect_error_reply(raw, "bad magic");
  round_trip(good, ++seq);

  raw.send({header_bytes(raw_push(5, 1, 4)).substr(0, 100), "abcd"});
  expect_error_reply(raw, "truncated header: 100 bytes, a header is 128");
  round_trip(good, ++seq);

  raw.send({header_bytes(raw_push(5, 1, 4)) + "x", "abcd"});
  expect_error_reply(raw, "1 extra bytes");
  round_trip(good, ++seq);

  Header huge = raw_push(5, 2, 0);
  huge.shape[0] = int64_t{1} << 40;
  huge.payload_bytes = uint64_t{1} << 40;
  raw.send({header_bytes(huge), "tiny"});
  expect_error_reply(raw, "message of 1099511627776 bytes exceeds the limit of 2147483648");
  round_trip(good, ++seq);

  raw.send({header_bytes(raw_push(5, 77, 10)), "short"});
  const Header echoed = expect_error_reply(raw, "payload of 5 bytes, the header declares 10");
  EXPECT_EQ(echoed.seq, 77u);  // the header decoded: its seq comes back
  round_trip(good, ++seq);

  Header mismatch = raw_push(5, 3, 8);
  mismatch.dtype = DType::f32;  // 8 elements of f32 are 32 bytes, not 8
  raw.send({header_bytes(mismatch), std::string(8, 'x')});
  expect_error_reply(raw, "shape [8] of f32 is 32 bytes but the header declares 8 payload bytes");
  round_trip(good, ++seq);

  raw.send({header_bytes(raw_push(5, 4, 3)), "abc", "extra frame"});
  expect_error_reply(raw, "expected 2 frames (header, payload), got 3");
  round_trip(good, ++seq);

  raw.send({header_bytes(raw_push(6, 5, 3)), "abc"});
  expect_error_reply(raw, "push claims worker 6, but this peer said hello as worker 5");
  round_trip(good, ++seq);

  EXPECT_EQ(server.rejected(), 9);
  // The raw peer, now well-behaved, is served too.
  raw.send({header_bytes(raw_push(5, 6, 3)), "abc"});
  auto ack = raw.receive(kWait);
  ASSERT_TRUE(ack);
  ASSERT_EQ(ack->size(), 2u);
  EXPECT_EQ((*ack)[1], "abc");
  EXPECT_EQ(server.failure(), "");
}

TEST_P(VanTest, SendRejectsAnInvalidHeaderBeforeItLeaves) {
  EchoServer server(bind_address(), options());
  ZmqClientVan client(server.endpoint(), 1, options());
  Header h = raw_push(0, 1, 16);
  h.dtype = DType::f64;  // 16 elements of f64 are not 16 bytes
  std::string payload(16, 'x');
  EXPECT_THROW(client.send(h, Payload::from_string(payload)), loom::ProtocolError);
  round_trip(client, 2);
  EXPECT_EQ(server.rejected(), 0);
}

TEST_P(VanTest, MalformedReplyThrowsProtocolErrorOnTheClient) {
  RawSocket router(raw_context(), ZMQ_ROUTER);
  router.bind(bind_address());
  const std::string endpoint = router.last_endpoint();
  std::thread fake_server([&] {
    auto hello = router.receive(kWait);
    if (!hello || hello->size() != 3) return;
    Header ack;
    ack.op = Op::hello_ack;
    router.send({(*hello)[0], header_bytes(ack), ""});
    router.send({(*hello)[0], "one frame of nonsense"});
    router.send({(*hello)[0], std::string(kHeaderBytes, 'Z'), ""});
    Header ok;
    ok.op = Op::pull_reply;
    ok.seq = 4;
    router.send({(*hello)[0], header_bytes(ok), "not declared"});
  });
  ZmqClientVan client(endpoint, 2, options());
  fake_server.join();
  try {
    client.receive(kWait);
    FAIL() << "no throw";
  } catch (const loom::ProtocolError& e) {
    EXPECT_EQ(std::string(e.what()),
              "malformed reply from the parameter server at " + endpoint + ": expected 2 frames, got 1");
  }
  try {
    client.receive(kWait);
    FAIL() << "no throw";
  } catch (const loom::ProtocolError& e) {
    EXPECT_NE(std::string(e.what()).find("bad magic"), std::string::npos) << e.what();
  }
  try {
    client.receive(kWait);
    FAIL() << "no throw";
  } catch (const loom::ProtocolError& e) {
    EXPECT_NE(std::string(e.what()).find("payload of 12 bytes, the header declares 0"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace loom::ps
