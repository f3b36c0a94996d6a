// The van handshake: hello and hello_ack, tokens, protocol versions, payload limits, a
// server that is not there.
#include "unit/ps/van_testing.h"

namespace loom::ps {
namespace {

using namespace loom::ps::testing;

TEST_P(VanTest, HelloIsAcknowledgedAndReturnedToTheServer) {
  EchoServer server(bind_address(), options());
  if (!GetParam().inproc) {
    EXPECT_EQ(server.endpoint().rfind("tcp://127.0.0.1:", 0), 0u) << server.endpoint();
    EXPECT_NE(server.endpoint(), "tcp://127.0.0.1:0");
  }
  ZmqClientVan client(server.endpoint(), 7, options());
  EXPECT_EQ(client.worker_id(), 7u);
  // The server thread records the hello just after receive() has acknowledged it.
  const auto start = Clock::now();
  while (server.hellos().empty() && elapsed_ms(start) < 3000) std::this_thread::sleep_for(1ms);
  const auto hellos = server.hellos();
  ASSERT_EQ(hellos.size(), 1u);
  EXPECT_EQ(hellos[0].header.worker, 7u);
  EXPECT_EQ(hellos[0].payload.size, 0u);  // the token is not handed on
  EXPECT_EQ(hellos[0].peer.rfind("w7-", 0), 0u) << loom::ps::describe_peer(hellos[0].peer);
  EXPECT_EQ(server.rejected(), 0);
  EXPECT_EQ(server.failure(), "");
}

TEST_P(VanTest, WrongTokenIsRejectedWithTheCause) {
  VanOptions server_options = options();
  server_options.token = "s3cret";
  EchoServer server(bind_address(), server_options);

  VanOptions wrong = options();
  wrong.token = "guess";
  try {
    ZmqClientVan client(server.endpoint(), 1, wrong);
    FAIL() << "handshake with a wrong token succeeded";
  } catch (const loom::CommError& e) {
    EXPECT_EQ(std::string(e.what()), "server at " + server.endpoint() + " rejected the handshake: wrong token");
  }
  VanOptions missing = options();
  try {
    ZmqClientVan client(server.endpoint(), 1, missing);
    FAIL() << "handshake without a token succeeded";
  } catch (const loom::CommError& e) {
    EXPECT_NE(std::string(e.what()).find("missing token"), std::string::npos) << e.what();
  }
  EXPECT_EQ(server.rejected(), 2);
  EXPECT_TRUE(server.hellos().empty());

  VanOptions right = options();
  right.token = "s3cret";
  ZmqClientVan client(server.endpoint(), 1, right);
  round_trip(client, 1);
  EXPECT_EQ(server.hellos().size(), 1u);
}

TEST_P(VanTest, TokenWhereTheServerHasNoneIsRejected) {
  EchoServer server(bind_address(), options());
  VanOptions with_token = options();
  with_token.token = "abc";
  try {
    ZmqClientVan client(server.endpoint(), 1, with_token);
    FAIL() << "no throw";
  } catch (const loom::CommError& e) {
    EXPECT_NE(std::string(e.what()).find("unexpected token"), std::string::npos) << e.what();
  }
}

TEST_P(VanTest, WrongVersionIsRejectedWithTheCause) {
  EchoServer server(bind_address(), options());
  RawSocket raw(raw_context(), ZMQ_DEALER);
  raw.connect(server.endpoint());
  raw.send({header_bytes(hello_from(1, 7)), ""});
  expect_error_reply(raw, "protocol version 7, this process speaks 1");
  // Not accepted as a hello: a push afterwards is still refused.
  raw.send({header_bytes(raw_push(1, 1, 4)), "abcd"});
  expect_error_reply(raw, "push from a peer that has not said hello");
  EXPECT_TRUE(server.hellos().empty());
  EXPECT_EQ(server.rejected(), 2);
}

TEST_P(VanTest, ClientWithoutServerTimesOutNamingTheEndpoint) {
  std::string endpoint;
  if (GetParam().inproc) {
    endpoint = bind_address();  // never bound
  } else {
    ZmqServerVan gone(bind_address(), options());  // a port that was free a moment ago
    endpoint = gone.endpoint();
  }
  const auto start = Clock::now();
  try {
    ZmqClientVan client(endpoint, 1, options(200ms));
    FAIL() << "connected to nothing";
  } catch (const loom::TimeoutError& e) {
    EXPECT_EQ(std::string(e.what()),
              "no answer from the parameter server at " + endpoint + " within 200 ms (is it running?)");
  }
  const int64_t ms = elapsed_ms(start);
  EXPECT_GE(ms, 199);
  EXPECT_LT(ms, 1500);
}

// A worker whose payloads may exceed the server's limit (another --ps-slice-mb) is told
// so at the handshake, naming both limits, instead of timing out on its first big push.
TEST_P(VanTest, ClientWithALargerLimitThanTheServerIsRefusedAtTheHandshake) {
  VanOptions server_options = options();
  server_options.limits = loom::ps::limits_for_slices(1 << 20);
  EchoServer server(bind_address(), server_options);
  try {
    ZmqClientVan client(server.endpoint(), 0, options());  // default limit: 2 GiB
    ADD_FAILURE() << "no error";
  } catch (const loom::CommError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("accepts payloads of at most 1048576 bytes"), std::string::npos) << what;
    EXPECT_NE(what.find("this worker's limit is 2147483648 bytes"), std::string::npos) << what;
    EXPECT_NE(what.find(server.endpoint()), std::string::npos) << what;
  }
  VanOptions same = options();
  same.limits = server_options.limits;
  ZmqClientVan client(server.endpoint(), 0, same);
  round_trip(client, 1, 1 << 20);
}

TEST(Van, TokenFromEnvironment) {
  auto token_from = [](std::optional<std::string> value) {
    return VanOptions::from_lookup(
               [&](const std::string& name) { return name == "LOOM_PS_TOKEN" ? value : std::nullopt; })
        .token;
  };
  EXPECT_EQ(token_from("from-env"), "from-env");
  EXPECT_EQ(token_from(std::nullopt), "");
}

TEST(Van, ConstantTimeEqual) {
  EXPECT_TRUE(loom::ps::constant_time_equal("", ""));
  EXPECT_TRUE(loom::ps::constant_time_equal("abc", "abc"));
  EXPECT_FALSE(loom::ps::constant_time_equal("abc", "abd"));
  EXPECT_FALSE(loom::ps::constant_time_equal("abc", "abcd"));
  EXPECT_FALSE(loom::ps::constant_time_equal("abc", ""));
  EXPECT_FALSE(loom::ps::constant_time_equal(std::string("a\0", 2), "a"));
}

INSTANTIATE_TEST_SUITE_P(Transports, VanTest, ::testing::Values(Transport{"inproc", true}, Transport{"tcp", false}),
                         [](const ::testing::TestParamInfo<Transport>& info) { return info.param.name; });

}  // namespace
}  // namespace loom::ps
