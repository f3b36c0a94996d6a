// Vans when something is missing: receive timeouts, peers that vanished, an endpoint
// that cannot be bound.
#include "unit/ps/van_testing.h"

namespace loom::ps {
namespace {

using namespace loom::ps::testing;

TEST_P(VanTest, ReceiveTimesOutWithNullopt) {
  ZmqServerVan server(bind_address(), options());
  auto start = Clock::now();
  EXPECT_FALSE(server.receive(100ms));
  int64_t ms = elapsed_ms(start);
  EXPECT_GE(ms, 99);
  EXPECT_LT(ms, 1000);
  start = Clock::now();
  EXPECT_FALSE(server.receive(0ms));
  EXPECT_LT(elapsed_ms(start), 100);

  // Garbage does not extend the wait: it is rejected and receive() still returns on time.
  RawSocket raw(raw_context(), ZMQ_DEALER);
  raw.connect(server.endpoint());
  raw.send({"junk"});
  start = Clock::now();
  EXPECT_FALSE(server.receive(200ms));
  ms = elapsed_ms(start);
  EXPECT_GE(ms, 199);
  EXPECT_LT(ms, 1500);
  EXPECT_EQ(server.rejected(), 1);
}

TEST_P(VanTest, ClientReceiveTimesOutWithNullopt) {
  EchoServer server(bind_address(), options());
  ZmqClientVan client(server.endpoint(), 1, options());
  const auto start = Clock::now();
  EXPECT_FALSE(client.receive(100ms));
  const int64_t ms = elapsed_ms(start);
  EXPECT_GE(ms, 99);
  EXPECT_LT(ms, 1000);
}

TEST_P(VanTest, SendingToAnUnknownOrVanishedPeerIsACommErrorNamingIt) {
  ZmqServerVan server(bind_address(), options());
  try {
    server.send("nobody", Header{});
    FAIL() << "sent to a peer that never existed";
  } catch (const loom::CommError& e) {
    EXPECT_NE(std::string(e.what()).find("nobody"), std::string::npos) << e.what();
  }

  // A client says hello (served by this thread), then goes away.
  std::string peer;
  {
    std::optional<ZmqClientVan> client;
    std::thread worker([&] { client.emplace(server.endpoint(), 3, options()); });
    const auto start = Clock::now();
    while (peer.empty() && elapsed_ms(start) < 3000) {
      if (auto m = server.receive(50ms); m && m->header.op == Op::hello) peer = m->peer;
    }
    worker.join();
    ASSERT_FALSE(peer.empty());
  }
  Header reply;
  reply.op = Op::pull_reply;
  bool threw = false;
  const auto start = Clock::now();
  while (!threw && elapsed_ms(start) < 3000) {
    try {
      server.send(peer, reply);
      std::this_thread::sleep_for(5ms);
    } catch (const loom::CommError& e) {
      threw = true;
      EXPECT_NE(std::string(e.what()).find(loom::ps::describe_peer(peer)), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("not connected"), std::string::npos) << e.what();
    }
  }
  EXPECT_TRUE(threw) << "sending to a vanished peer never failed";
}

TEST(Van, DescribePeer) {
  EXPECT_EQ(loom::ps::describe_peer("w3-00ff"), "w3-00ff");
  EXPECT_EQ(loom::ps::describe_peer(std::string("\0\x80\x01", 3)), "0x008001");
}

TEST(Van, BindFailureNamesTheEndpoint) {
  VanOptions insecure;
  insecure.insecure = true;  // not loopback: without it, the refusal to listen in the clear comes first
  try {
    ZmqServerVan van("tcp://256.1.1.1:5", insecure);
    FAIL() << "no throw";
  } catch (const loom::CommError& e) {
    EXPECT_NE(std::string(e.what()).find("cannot bind the parameter server to tcp://256.1.1.1:5"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace loom::ps
