// Helpers for the van tests: an echo server on its own thread, raw ZeroMQ sockets that
// play misbehaving peers, raw headers, and the VanTest fixture, run over inproc:// and
// tcp://127.0.0.1:0 (instantiated once, in van_handshake_test.cpp).
#pragma once

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "loom/core/error.h"
#include "loom/core/tsan.h"
#include "loom/ps/zmq_context.h"
#include "loom/ps/zmq_van.h"
#include "unit/ps/ps_testing.h"

namespace loom::ps::testing {

// Generous for a loaded machine; every wait that succeeds returns much earlier.
inline constexpr auto kWait = 3000ms;

inline bool zero_copy(const Payload& p) {
  auto message = std::static_pointer_cast<zmq::message_t>(p.owner);
  return message && p.size > 0 && p.data == message->data() && p.size == message->size();
}

// Runs a ZmqServerVan on its own thread (the van's one thread): acknowledges pushes by
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

  ZmqServerVan van_;
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

inline std::string header_bytes(const Header& h) {
  std::string bytes(kHeaderBytes, '\0');
  loom::ps::encode_header(h, reinterpret_cast<uint8_t*>(bytes.data()));
  return bytes;
}

inline Header hello_from(uint32_t worker, uint16_t version = loom::ps::kProtocolVersion) {
  Header h;
  h.version = version;
  h.op = Op::hello;
  h.worker = worker;
  return h;
}

inline Header raw_push(uint32_t worker, uint64_t seq, uint64_t bytes) {
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
inline Header expect_error_reply(RawSocket& raw, const std::string& reason) {
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
inline void PrintTo(const Transport& t, std::ostream* os) { *os << t.name; }

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
  void* raw_context() const { return context_->impl().context.handle(); }

  // A push of `bytes` through `client`, echoed; checks the echo.
  void round_trip(ZmqClientVan& client, uint64_t seq, size_t bytes = 64) {
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

  std::shared_ptr<ZmqContext> context_ = std::make_shared<ZmqContext>();
};

}  // namespace loom::ps::testing
