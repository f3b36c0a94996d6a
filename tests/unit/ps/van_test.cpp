// ServerVan / ClientVan over inproc:// and tcp://127.0.0.1:0. A server thread echoes
// pushes; raw ZeroMQ sockets play the misbehaving peers.
#include "loom/ps/van.h"

#include <gtest/gtest.h>
#include <zmq.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "loom/core/error.h"
#include "loom/core/tsan.h"

namespace {

using namespace std::chrono_literals;
using loom::ps::ClientVan;
using loom::ps::CurveKeys;
using loom::ps::DType;
using loom::ps::Header;
using loom::ps::kHeaderBytes;
using loom::ps::Message;
using loom::ps::Op;
using loom::ps::Payload;
using loom::ps::ServerVan;
using loom::ps::VanContext;
using loom::ps::VanOptions;
using Clock = std::chrono::steady_clock;

// Generous for a loaded machine; every wait that succeeds returns much earlier.
constexpr auto kWait = 3000ms;

int64_t elapsed_ms(Clock::time_point since) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - since).count();
}

bool zero_copy(const Payload& p) {
  auto message = std::static_pointer_cast<zmq::message_t>(p.owner);
  return message && p.size > 0 && p.data == message->data() && p.size == message->size();
}

// Runs a ServerVan on its own thread (the van's one thread): acknowledges pushes by
// echoing header and payload (zero-copy, the received message is the sent owner),
// records hellos.
class EchoServer {
 public:
  EchoServer(const std::string& endpoint, VanOptions options)
      : van_(endpoint, std::move(options)), endpoint_(van_.endpoint()), thread_([this] { run(); }) {}
  ~EchoServer() {
    stop_ = true;
    thread_.join();
  }

  const std::string& endpoint() const { return endpoint_; }
  int64_t rejected() const { return van_.rejected(); }
  std::vector<Message> hellos() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return hellos_;
  }
  std::string failure() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return failure_;
  }
  bool pushes_were_zero_copy() const { return zero_copy_pushes_ > 0 && copied_pushes_ == 0; }

 private:
  void run() {
    while (!stop_) {
      try {
        std::optional<Message> m = van_.receive(20ms);
        if (!m) continue;
        if (m->header.op == Op::hello) {
          std::lock_guard<std::mutex> lock(mutex_);
          hellos_.push_back(*m);
        } else if (m->header.op == Op::push) {
          (zero_copy(m->payload) ? zero_copy_pushes_ : copied_pushes_)++;
          Header ack = m->header;
          ack.op = Op::push_ack;
          van_.send(m->peer, ack, m->payload);
        }
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> lock(mutex_);
        failure_ = e.what();
      }
    }
  }

  ServerVan van_;
  std::string endpoint_;
  std::atomic<bool> stop_{false};
  std::atomic<int> zero_copy_pushes_{0};
  std::atomic<int> copied_pushes_{0};
  mutable std::mutex mutex_;
  std::vector<Message> hellos_;
  std::string failure_;
  std::thread thread_;  // last: starts after everything it uses exists
};

// A plain ZeroMQ socket that can send anything.
class RawSocket {
 public:
  RawSocket(void* context, int type) : socket_(zmq_socket(context, type)) { socket().set(zmq::sockopt::linger, 0); }
  ~RawSocket() { zmq_close(socket_); }
  RawSocket(const RawSocket&) = delete;
  RawSocket& operator=(const RawSocket&) = delete;

  zmq::socket_ref socket() { return zmq::socket_ref(zmq::from_handle, socket_); }
  void connect(const std::string& endpoint) { socket().connect(endpoint); }
  void bind(const std::string& endpoint) { socket().bind(endpoint); }
  std::string last_endpoint() { return socket().get(zmq::sockopt::last_endpoint); }

  void send(const std::vector<std::string>& frames) {
    for (size_t i = 0; i < frames.size(); ++i) {
      zmq::message_t m(frames[i].data(), frames[i].size());
      loom::tsan::release(m.data());  // as the vans do: ZeroMQ's queues are invisible to TSan
      ASSERT_TRUE(socket().send(m, i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none));
    }
  }
  std::optional<std::vector<std::string>> receive(std::chrono::milliseconds timeout) {
    zmq::pollitem_t item{socket_, 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, timeout) <= 0) return std::nullopt;
    std::vector<std::string> frames;
    for (;;) {
      zmq::message_t m;
      EXPECT_TRUE(socket().recv(m));
      loom::tsan::acquire(m.data());
      frames.push_back(m.to_string());
      if (!m.more()) return frames;
    }
  }

 private:
  void* socket_;
};

std::string header_bytes(const Header& h) {
  std::string bytes(kHeaderBytes, '\0');
  loom::ps::encode_header(h, reinterpret_cast<uint8_t*>(bytes.data()));
  return bytes;
}

Header hello_from(uint32_t worker, uint16_t version = loom::ps::kProtocolVersion) {
  Header h;
  h.version = version;
  h.op = Op::hello;
  h.worker = worker;
  return h;
}

Header raw_push(uint32_t worker, uint64_t seq, uint64_t bytes) {
  Header h;
  h.op = Op::push;
  h.dtype = DType::u8;
  h.ndim = 1;
  h.shape[0] = static_cast<int64_t>(bytes);
  h.payload_bytes = bytes;
  h.worker = worker;
  h.seq = seq;
  return h;
}

// Expects an Op::error reply whose reason contains `reason`; returns its header.
Header expect_error_reply(RawSocket& raw, const std::string& reason) {
  auto reply = raw.receive(kWait);
  EXPECT_TRUE(reply) << "no error reply (expected: " << reason << ")";
  if (!reply) return {};
  EXPECT_EQ(reply->size(), 2u);
  if (reply->size() != 2) return {};
  const Header h = loom::ps::decode_header(reinterpret_cast<const uint8_t*>((*reply)[0].data()), (*reply)[0].size(),
                                           loom::ps::Limits{});
  EXPECT_EQ(h.op, Op::error);
  EXPECT_NE((*reply)[1].find(reason), std::string::npos) << "reason: " << (*reply)[1];
  return h;
}

struct Transport {
  std::string name;
  bool inproc;
};
void PrintTo(const Transport& t, std::ostream* os) { *os << t.name; }

class VanTest : public ::testing::TestWithParam<Transport> {
 protected:
  // inproc:// needs one context for both ends; over tcp each van makes its own, as in
  // separate processes, and raw sockets use yet another.
  VanOptions options(std::chrono::milliseconds timeout = kWait) const {
    VanOptions o;
    o.timeout = timeout;
    if (GetParam().inproc) o.context = context_;
    return o;
  }
  std::string bind_address() const {
    static std::atomic<int> counter{0};
    return GetParam().inproc ? "inproc://van-test-" + std::to_string(counter++) : "tcp://127.0.0.1:0";
  }
  void* raw_context() const { return context_->native_handle(); }

  // A push of `bytes` through `client`, echoed; checks the echo.
  void round_trip(ClientVan& client, uint64_t seq, size_t bytes = 64) {
    auto buffer = std::make_shared<std::vector<uint8_t>>(bytes);
    for (size_t i = 0; i < bytes; ++i) (*buffer)[i] = static_cast<uint8_t>(i * 7 + seq);
    Header h;
    h.op = Op::push;
    h.dtype = DType::u8;
    h.ndim = 1;
    h.shape[0] = static_cast<int64_t>(bytes);
    h.seq = seq;
    client.send(h, Payload{buffer->data(), buffer->size(), buffer});
    auto reply = client.receive(kWait);
    ASSERT_TRUE(reply) << "no push_ack for seq " << seq;
    EXPECT_EQ(reply->header.op, Op::push_ack);
    EXPECT_EQ(reply->header.seq, seq);
    ASSERT_EQ(reply->payload.size, bytes);
    EXPECT_EQ(std::memcmp(reply->payload.data, buffer->data(), bytes), 0);
  }

  std::shared_ptr<VanContext> context_ = std::make_shared<VanContext>();
};

TEST_P(VanTest, HelloIsAcknowledgedAndReturnedToTheServer) {
  EchoServer server(bind_address(), options());
  if (!GetParam().inproc) {
    EXPECT_EQ(server.endpoint().rfind("tcp://127.0.0.1:", 0), 0u) << server.endpoint();
    EXPECT_NE(server.endpoint(), "tcp://127.0.0.1:0");
  }
  ClientVan client(server.endpoint(), 7, options());
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

TEST_P(VanTest, FourMiBPushRoundTripsByteExactWithoutCopies) {
  EchoServer server(bind_address(), options());
  ClientVan client(server.endpoint(), 1, options());
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
  ClientVan client(server.endpoint(), 1, options());
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

TEST_P(VanTest, WrongTokenIsRejectedWithTheCause) {
  VanOptions server_options = options();
  server_options.token = "s3cret";
  EchoServer server(bind_address(), server_options);

  VanOptions wrong = options();
  wrong.token = "guess";
  try {
    ClientVan client(server.endpoint(), 1, wrong);
    FAIL() << "handshake with a wrong token succeeded";
  } catch (const loom::CommError& e) {
    EXPECT_EQ(std::string(e.what()), "server at " + server.endpoint() + " rejected the handshake: wrong token");
  }
  VanOptions missing = options();
  try {
    ClientVan client(server.endpoint(), 1, missing);
    FAIL() << "handshake without a token succeeded";
  } catch (const loom::CommError& e) {
    EXPECT_NE(std::string(e.what()).find("missing token"), std::string::npos) << e.what();
  }
  EXPECT_EQ(server.rejected(), 2);
  EXPECT_TRUE(server.hellos().empty());

  VanOptions right = options();
  right.token = "s3cret";
  ClientVan client(server.endpoint(), 1, right);
  round_trip(client, 1);
  EXPECT_EQ(server.hellos().size(), 1u);
}

TEST_P(VanTest, TokenWhereTheServerHasNoneIsRejected) {
  EchoServer server(bind_address(), options());
  VanOptions with_token = options();
  with_token.token = "abc";
  try {
    ClientVan client(server.endpoint(), 1, with_token);
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

TEST_P(VanTest, MalformedMessagesGetErrorsWhileAGoodClientIsServed) {
  EchoServer server(bind_address(), options());
  ClientVan good(server.endpoint(), 0, options());
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

TEST_P(VanTest, ReceiveTimesOutWithNullopt) {
  ServerVan server(bind_address(), options());
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
  ClientVan client(server.endpoint(), 1, options());
  const auto start = Clock::now();
  EXPECT_FALSE(client.receive(100ms));
  const int64_t ms = elapsed_ms(start);
  EXPECT_GE(ms, 99);
  EXPECT_LT(ms, 1000);
}

TEST_P(VanTest, ClientWithoutServerTimesOutNamingTheEndpoint) {
  std::string endpoint;
  if (GetParam().inproc) {
    endpoint = bind_address();  // never bound
  } else {
    ServerVan gone(bind_address(), options());  // a port that was free a moment ago
    endpoint = gone.endpoint();
  }
  const auto start = Clock::now();
  try {
    ClientVan client(endpoint, 1, options(200ms));
    FAIL() << "connected to nothing";
  } catch (const loom::TimeoutError& e) {
    EXPECT_EQ(std::string(e.what()),
              "no answer from the parameter server at " + endpoint + " within 200 ms (is it running?)");
  }
  const int64_t ms = elapsed_ms(start);
  EXPECT_GE(ms, 199);
  EXPECT_LT(ms, 1500);
}

TEST_P(VanTest, SendingToAnUnknownOrVanishedPeerIsACommErrorNamingIt) {
  ServerVan server(bind_address(), options());
  try {
    server.send("nobody", Header{});
    FAIL() << "sent to a peer that never existed";
  } catch (const loom::CommError& e) {
    EXPECT_NE(std::string(e.what()).find("nobody"), std::string::npos) << e.what();
  }

  // A client says hello (served by this thread), then goes away.
  std::string peer;
  {
    std::optional<ClientVan> client;
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

TEST_P(VanTest, SendRejectsAnInvalidHeaderBeforeItLeaves) {
  EchoServer server(bind_address(), options());
  ClientVan client(server.endpoint(), 1, options());
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
  ClientVan client(endpoint, 2, options());
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
  ClientVan client(endpoint, 2, options());
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
  ClientVan a(first.endpoint(), 1, options());
  ClientVan b(second.endpoint(), 1, options());
  const auto start = Clock::now();
  EXPECT_EQ(ClientVan::poll_any({&a, &b}, 100ms), -1);
  EXPECT_GE(elapsed_ms(start), 99);
  b.send(raw_push(0, 1, 0));
  EXPECT_EQ(ClientVan::poll_any({&a, &b}, kWait), 1);
  ASSERT_TRUE(b.receive(0ms));
}

INSTANTIATE_TEST_SUITE_P(Transports, VanTest, ::testing::Values(Transport{"inproc", true}, Transport{"tcp", false}),
                         [](const ::testing::TestParamInfo<Transport>& info) { return info.param.name; });

// Over TCP, ZeroMQ itself drops a frame over the limit (ZMQ_MAXMSGSIZE) before allocating
// it: the sender's connection is closed, nothing reaches receive(), others are served.
TEST(VanTcp, FrameOverTheLimitIsDroppedByZeroMQ) {
  VanOptions small;
  small.timeout = kWait;
  small.limits.max_payload_bytes = 1024;
  EchoServer server("tcp://127.0.0.1:0", small);
  ClientVan good(server.endpoint(), 0, small);
  VanContext context;
  RawSocket raw(context.native_handle(), ZMQ_DEALER);
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
  ClientVan good(server.endpoint(), 0, small);
  VanContext context;
  const uint64_t limit = small.limits.max_payload_bytes;
  {
    RawSocket raw(context.native_handle(), ZMQ_DEALER);
    raw.connect(server.endpoint());
    raw.send({header_bytes(raw_push(9, 1, limit)), std::string(limit, 'x')});
    expect_error_reply(raw, "push from a peer that has not said hello");
  }
  {
    RawSocket raw(context.native_handle(), ZMQ_DEALER);
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

// A worker whose payloads may exceed the server's limit (another --ps-slice-mb) is told
// so at the handshake, naming both limits, instead of timing out on its first big push.
TEST_P(VanTest, ClientWithALargerLimitThanTheServerIsRefusedAtTheHandshake) {
  VanOptions server_options = options();
  server_options.limits = loom::ps::limits_for_slices(1 << 20);
  EchoServer server(bind_address(), server_options);
  try {
    ClientVan client(server.endpoint(), 0, options());  // default limit: 2 GiB
    ADD_FAILURE() << "no error";
  } catch (const loom::CommError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("accepts payloads of at most 1048576 bytes"), std::string::npos) << what;
    EXPECT_NE(what.find("this worker's limit is 2147483648 bytes"), std::string::npos) << what;
    EXPECT_NE(what.find(server.endpoint()), std::string::npos) << what;
  }
  VanOptions same = options();
  same.limits = server_options.limits;
  ClientVan client(server.endpoint(), 0, same);
  round_trip(client, 1, 1 << 20);
}

TEST(Van, LimitsForSlices) {
  EXPECT_EQ(loom::ps::limits_for_slices(4 << 20).max_payload_bytes, 4u << 20);
  EXPECT_EQ(loom::ps::limits_for_slices(100).max_payload_bytes, loom::ps::kMinPayloadLimit);
  EXPECT_EQ(loom::ps::limits_for_slices(0).max_payload_bytes, loom::ps::kMinPayloadLimit);
}

// ---- CURVE -------------------------------------------------------------------------

// Over a real TCP socket: a client holding the job's key pair is served; a client with
// no key, with another job's key pair, or with the server's public key but a key pair
// of its own (what ZAP is there for) never gets a message to loom.
TEST(VanCurve, OnlyAClientHoldingTheJobsKeyIsServed) {
  ASSERT_TRUE(loom::ps::curve_available()) << "libzmq without CURVE: scripts/install-deps.sh";
  const CurveKeys job = CurveKeys::generate();
  VanOptions with_key;
  with_key.timeout = kWait;
  with_key.curve = job;
  EchoServer server("tcp://127.0.0.1:0", with_key);
  ClientVan good(server.endpoint(), 0, with_key);
  auto buffer = std::make_shared<std::string>(4096, 'c');
  good.send(raw_push(0, 1, buffer->size()), Payload{buffer->data(), buffer->size(), buffer});
  auto reply = good.receive(kWait);
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->payload.bytes(), *buffer);

  VanOptions no_key;
  no_key.timeout = 500ms;
  try {
    ClientVan plain(server.endpoint(), 1, no_key);
    ADD_FAILURE() << "a client without the key was served";
  } catch (const loom::TimeoutError& e) {
    EXPECT_NE(std::string(e.what()).find(server.endpoint()), std::string::npos) << e.what();
  }
  VanOptions other_job = no_key;
  other_job.curve = CurveKeys::generate();
  try {
    ClientVan other(server.endpoint(), 2, other_job);
    ADD_FAILURE() << "a client with another job's key was served";
  } catch (const loom::TimeoutError& e) {
    EXPECT_NE(std::string(e.what()).find("with this job's CURVE key"), std::string::npos) << e.what();
  }
  {  // knows the server's public key, but holds only a key pair of its own
    const CurveKeys own = CurveKeys::generate();
    VanContext context;
    RawSocket raw(context.native_handle(), ZMQ_DEALER);
    raw.socket().set(zmq::sockopt::curve_serverkey, job.public_key);
    raw.socket().set(zmq::sockopt::curve_publickey, own.public_key);
    raw.socket().set(zmq::sockopt::curve_secretkey, own.secret_key);
    raw.connect(server.endpoint());
    raw.send({header_bytes(hello_from(3)), ""});
    EXPECT_FALSE(raw.receive(500ms)) << "ZAP admitted a client that does not hold the job's secret key";
  }
  EXPECT_EQ(server.hellos().size(), 1u) << "only the client with the key said hello";
  EXPECT_EQ(server.rejected(), 0) << "nothing from the others reached loom";
  EXPECT_EQ(server.failure(), "");
}

TEST(VanCurve, OffThisMachineWithoutAKeyIsRefusedUnlessInsecure) {
  VanOptions plain;
  plain.timeout = kWait;
  try {
    ServerVan van("tcp://0.0.0.0:0", plain);
    ADD_FAILURE() << "listened off loopback without a key";
  } catch (const loom::ConfigError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("refusing to listen on tcp://0.0.0.0:0"), std::string::npos) << what;
    EXPECT_NE(what.find("LOOM_PS_CURVE_KEY_FILE"), std::string::npos) << what;
    EXPECT_NE(what.find("--insecure"), std::string::npos) << what;
  }
  try {
    ClientVan client("tcp://192.0.2.1:5555", 0, plain);
    ADD_FAILURE() << "connected off loopback without a key";
  } catch (const loom::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("refusing to connect to the parameter server at tcp://192.0.2.1:5555"),
              std::string::npos)
        << e.what();
  }
  VanOptions insecure = plain;
  insecure.insecure = true;
  EXPECT_NO_THROW(ServerVan("tcp://0.0.0.0:0", insecure));
  VanOptions keyed = plain;
  keyed.curve = CurveKeys::generate();
  EXPECT_NO_THROW(ServerVan("tcp://0.0.0.0:0", keyed));

  for (const char* local : {"inproc://x", "ipc:///tmp/x", "tcp://127.0.0.1:0", "tcp://127.8.9.10:5", "tcp://[::1]:5",
                            "tcp://localhost:5", "tcp://lo:5"}) {
    EXPECT_TRUE(loom::ps::is_local_endpoint(local)) << local;
  }
  for (const char* remote : {"tcp://0.0.0.0:0", "tcp://*:5", "tcp://10.0.0.2:5", "tcp://[::]:5", "tcp://eth0:5",
                             "tcp://128.0.0.1:5", "udp://127.0.0.1:5"}) {
    EXPECT_FALSE(loom::ps::is_local_endpoint(remote)) << remote;
  }
}

TEST(VanCurve, KeyFromTheEnvironmentOrAPrivateFile) {
  const CurveKeys keys = CurveKeys::generate();
  EXPECT_EQ(CurveKeys::from_secret(keys.secret_key).public_key, keys.public_key);
  ::setenv("LOOM_PS_CURVE_SECRET", keys.secret_key.c_str(), 1);
  EXPECT_EQ(VanOptions::from_environment().curve.public_key, keys.public_key);
  const std::string bad = "this is not a Z85 key but it is secret!!";
  ::setenv("LOOM_PS_CURVE_SECRET", bad.c_str(), 1);
  try {
    VanOptions::from_environment();
    ADD_FAILURE() << "took a bad key";
  } catch (const loom::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("LOOM_PS_CURVE_SECRET"), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find(bad), std::string::npos) << "the error quotes the key: " << e.what();
  }
  ::unsetenv("LOOM_PS_CURVE_SECRET");

  const std::string path = ::testing::TempDir() + "/loom-van-key-" + std::to_string(::getpid());
  ::unlink(path.c_str());
  const CurveKeys written = loom::ps::write_curve_key_file(path);
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_THROW(loom::ps::write_curve_key_file(path), loom::ConfigError) << "overwrote an existing key file";
  ::setenv("LOOM_PS_CURVE_KEY_FILE", path.c_str(), 1);
  EXPECT_EQ(VanOptions::from_environment().curve.public_key, written.public_key);
  ::chmod(path.c_str(), 0644);
  try {
    VanOptions::from_environment();
    ADD_FAILURE() << "took a key file others may read";
  } catch (const loom::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("mode 644"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
  ::unsetenv("LOOM_PS_CURVE_KEY_FILE");
  ::unlink(path.c_str());
  EXPECT_TRUE(VanOptions::from_environment().curve.empty());
}

TEST(Van, TokenFromEnvironment) {
  ::setenv("LOOM_PS_TOKEN", "from-env", 1);
  EXPECT_EQ(VanOptions::from_environment().token, "from-env");
  ::unsetenv("LOOM_PS_TOKEN");
  EXPECT_EQ(VanOptions::from_environment().token, "");
}

TEST(Van, ConstantTimeEqual) {
  EXPECT_TRUE(loom::ps::constant_time_equal("", ""));
  EXPECT_TRUE(loom::ps::constant_time_equal("abc", "abc"));
  EXPECT_FALSE(loom::ps::constant_time_equal("abc", "abd"));
  EXPECT_FALSE(loom::ps::constant_time_equal("abc", "abcd"));
  EXPECT_FALSE(loom::ps::constant_time_equal("abc", ""));
  EXPECT_FALSE(loom::ps::constant_time_equal(std::string("a\0", 2), "a"));
}

TEST(Van, DescribePeer) {
  EXPECT_EQ(loom::ps::describe_peer("w3-00ff"), "w3-00ff");
  EXPECT_EQ(loom::ps::describe_peer(std::string("\0\x80\x01", 3)), "0x008001");
}

TEST(Van, BindFailureNamesTheEndpoint) {
  VanOptions insecure;
  insecure.insecure = true;  // not loopback: without it, the refusal to listen in the clear comes first
  try {
    ServerVan van("tcp://256.1.1.1:5", insecure);
    FAIL() << "no throw";
  } catch (const loom::CommError& e) {
    EXPECT_NE(std::string(e.what()).find("cannot bind the parameter server to tcp://256.1.1.1:5"), std::string::npos)
        << e.what();
  }
}

}  // namespace
