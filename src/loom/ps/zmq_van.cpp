// ZmqServerVan / ZmqClientVan over ZeroMQ (ROUTER / DEALER). Contracts in loom/ps/zmq_van.h.
#include <zmq.hpp>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_map>
#include <vector>

#include "loom/core/error.h"
#include "loom/core/log.h"
#include "loom/core/tsan.h"
#include "loom/ps/zap_handler.h"
#include "loom/ps/zmq_context.h"
#include "loom/ps/zmq_van.h"

namespace loom::ps {

ZmqContext::ZmqContext(int io_threads) : impl_(std::make_unique<Impl>(io_threads)) {}
ZmqContext::~ZmqContext() = default;

Payload Payload::from_string(std::string bytes) {
  auto owned = std::make_shared<std::string>(std::move(bytes));
  Payload p;
  p.data = owned->data();
  p.size = owned->size();
  p.owner = std::move(owned);
  return p;
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  // Branches depend on the lengths only; the accumulator is volatile so the compiler
  // cannot stop at the first difference.
  volatile unsigned char diff = a.size() == b.size() ? 0 : 1;
  const size_t n = std::max(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    const auto x = static_cast<unsigned char>(i < a.size() ? a[i] : 0);
    const auto y = static_cast<unsigned char>(i < b.size() ? b[i] : 0);
    diff = diff | static_cast<unsigned char>(x ^ y);
  }
  return diff == 0;
}

std::string describe_peer(const std::string& peer) {
  const bool printable =
      !peer.empty() && std::all_of(peer.begin(), peer.end(), [](char c) { return c > ' ' && c < 127; });
  if (printable) return peer;
  std::string hex = "0x";
  for (unsigned char c : peer) hex += fmt::format("{:02x}", c);
  return hex;
}

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

std::shared_ptr<ZmqContext> context_for(const VanOptions& options) {
  return options.context ? options.context : std::make_shared<ZmqContext>(options.io_threads);
}

int timeout_ms(milliseconds t) {
  return static_cast<int>(std::clamp<int64_t>(t.count(), 0, std::numeric_limits<int>::max()));
}

// ZeroMQ's frame limit (ZMQ_MAXMSGSIZE, per socket, for every frame of every peer,
// before any hello): the payload limit, or a header's size if that is larger. A larger
// frame closes the connection before it is allocated.
int64_t frame_limit(const Limits& limits) {
  const uint64_t max = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  return static_cast<int64_t>(std::min(std::max<uint64_t>(limits.max_payload_bytes, kHeaderBytes), max));
}

zmq::message_t header_frame(const Header& header) {
  zmq::message_t frame(kHeaderBytes);
  encode_header(header, static_cast<uint8_t*>(frame.data()));
  return frame;
}

// ZeroMQ calls this from whichever thread drops the frame last (often its I/O thread),
// after payload_frame handed the frame over: a hand-off TSan cannot see (tsan.h).
void release_owner(void* /*data*/, void* hint) {
  tsan::acquire(hint);
  delete static_cast<std::shared_ptr<void>*>(hint);
}

// The payload as a frame: zero-copy when it has an owner (the frame holds a reference
// until ZeroMQ is done with the bytes), a copy otherwise.
zmq::message_t payload_frame(const Payload& payload) {
  if (payload.size == 0) return zmq::message_t();
  if (!payload.owner) return zmq::message_t(payload.data, payload.size);
  auto hint = std::make_unique<std::shared_ptr<void>>(payload.owner);
  tsan::release(hint.get());
  zmq::message_t frame(const_cast<void*>(payload.data), payload.size, &release_owner, hint.get());
  hint.release();  // now owned by the frame: release_owner deletes it
  return frame;
}

// Receives one whole multipart message, waiting for it at most until `deadline`. Keeps
// the first `keep` frames and drops (but counts) the rest, so a peer cannot make us hold
// many frames. Returns the total frame count, 0 when nothing arrived in time. The wait
// is ZeroMQ's own blocking receive (ZMQ_RCVTIMEO), not a zmq_poll before a receive: a
// message already queued costs no system call, and a wait costs one (a zmq_poll costs
// four: its first pass, the socket's events, the wait, the events again). `role` and
// `endpoint` name the van in the CommError thrown when ZeroMQ fails.
size_t receive_within(zmq::socket_t& socket, std::vector<zmq::message_t>& frames, size_t keep,
                      Clock::time_point deadline, const char* role, const std::string& endpoint) {
  for (;;) {
    frames.clear();
    // Rounded up, so that a sub-millisecond remainder waits instead of spinning.
    const auto left = std::max(milliseconds(0), std::chrono::ceil<milliseconds>(deadline - Clock::now()));
    zmq::message_t frame;
    try {
      socket.set(zmq::sockopt::rcvtimeo, timeout_ms(left));
      if (socket.recv(frame, zmq::recv_flags::none)) {
        size_t count = 0;
        for (;;) {
          ++count;
          tsan::acquire(frame.data());  // the sender's release in send_frames (inproc frames share bytes)
          const bool more = frame.more();
          if (frames.size() < keep) frames.push_back(std::move(frame));
          if (!more) return count;
          frame = zmq::message_t();
          (void)socket.recv(frame, zmq::recv_flags::none);  // the rest of a multipart message is already here
        }
      }
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) LOOM_THROW(CommError, "{} {}: receiving failed: {}", role, endpoint, e.what());
    }
    if (Clock::now() >= deadline) return 0;
  }
}

// Sends frames as one multipart message; false when the first frame would block beyond
// the socket's send timeout (EAGAIN). Other ZeroMQ errors propagate.
bool send_frames(zmq::socket_t& socket, zmq::message_t* frames, size_t n, bool dontwait) {
  for (size_t i = 0; i < n; ++i) {
    zmq::send_flags flags = i + 1 < n ? zmq::send_flags::sndmore : zmq::send_flags::none;
    if (dontwait) flags = flags | zmq::send_flags::dontwait;
    // ZeroMQ's queues are lock-free and not instrumented: tell TSan the bytes written
    // so far are handed over (receive_frames acquires them).
    tsan::release(frames[i].data());
    if (!socket.send(frames[i], flags)) return false;
  }
  return true;
}

Payload payload_of(zmq::message_t&& frame) {
  auto owned = std::make_shared<zmq::message_t>(std::move(frame));
  Payload p;
  p.data = owned->data();
  p.size = owned->size();
  p.owner = std::move(owned);
  return p;
}

std::string z85_to_binary(const std::string& z85) {
  std::string binary(32, '\0');
  LOOM_CHECK(z85.size() == 40 && zmq_z85_decode(reinterpret_cast<uint8_t*>(binary.data()), z85.c_str()), ConfigError,
             "a CURVE key is not 40 characters of Z85 text");
  return binary;
}

// The routing identity a ZmqClientVan presents: printable, and stable across reconnects
// so that a ROUTER keeps serving it after a dropped TCP connection.
std::string client_identity(uint32_t worker_id) {
  std::random_device rd;
  const uint64_t nonce = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  return fmt::format("w{}-{:016x}", worker_id, nonce);
}

}  // namespace

// ---- ZmqServerVan ----------------------------------------------------------------------

struct ZmqServerVan::Impl {
  Impl(std::string requested, VanOptions opts)
      : options(std::move(opts)),
        context(context_for(options)),
        socket(context->impl().context, zmq::socket_type::router) {
    socket.set(zmq::sockopt::linger, 0);
    socket.set(zmq::sockopt::router_mandatory, 1);
    socket.set(zmq::sockopt::maxmsgsize, frame_limit(options.limits));
    socket.set(zmq::sockopt::sndtimeo, timeout_ms(options.timeout));
    if (!options.curve.empty()) {
      // The job's key pair is the server's; ZAP admits only clients holding it too.
      zap_domain = context->impl().zap().admit(z85_to_binary(options.curve.public_key));
      socket.set(zmq::sockopt::zap_domain, zap_domain);
      socket.set(zmq::sockopt::curve_server, 1);
      socket.set(zmq::sockopt::curve_secretkey, options.curve.secret_key);
    } else {
      LOOM_CHECK(options.insecure || is_local_endpoint(requested), ConfigError,
                 "parameter server: refusing to listen on {} without encryption or authentication: give the job a "
                 "CURVE key ({} or {}, see `loom ps-keygen`) or pass --insecure",
                 requested, kCurveKeyFileEnv, kCurveSecretEnv);
    }
    try {
      socket.bind(requested);
    } catch (const zmq::error_t& e) {
      if (!zap_domain.empty()) context->impl().zap().forget(zap_domain);
      LOOM_THROW(CommError, "cannot bind the parameter server to {}: {}", requested, e.what());
    }
    endpoint = socket.get(zmq::sockopt::last_endpoint);
    if (endpoint.empty()) endpoint = requested;
  }
  ~Impl() {
    if (!zap_domain.empty()) context->impl().zap().forget(zap_domain);
  }

  void reject(const std::string& peer, const Header* header, const std::string& reason);
  std::optional<Message> accept(std::vector<zmq::message_t>& frames, size_t count);
  bool send(const std::string& peer, const Header& header, const Payload& payload, bool dontwait);

  VanOptions options;
  std::shared_ptr<ZmqContext> context;  // outlives the socket (declared before it)
  zmq::socket_t socket;
  std::string zap_domain;  // with CURVE: this server's domain in the context's ZAP handler
  std::string endpoint;
  std::unordered_map<std::string, uint32_t> workers;  // peers that said hello -> worker id
  std::atomic<int64_t> rejected{0};
  std::vector<zmq::message_t> frames;
};

bool ZmqServerVan::Impl::send(const std::string& peer, const Header& header, const Payload& payload, bool dontwait) {
  Header h = header;
  h.version = kProtocolVersion;
  h.payload_bytes = payload.size;
  try {
    check_header(h, options.limits);
  } catch (const ProtocolError& e) {
    LOOM_THROW(ProtocolError, "refusing to send an invalid {} to {}: {}", op_name(h.op), describe_peer(peer), e.what());
  }
  try {
    zmq::message_t parts[3] = {zmq::message_t(peer.data(), peer.size()), header_frame(h), payload_frame(payload)};
    return send_frames(socket, parts, 3, dontwait);
  } catch (const zmq::error_t& e) {
    if (e.num() == EHOSTUNREACH) {
      LOOM_THROW(CommError, "cannot send {} to worker peer {}: it is not connected to {} (it may have exited)",
                 op_name(h.op), describe_peer(peer), endpoint);
    }
    LOOM_THROW(CommError, "sending {} to peer {} from {} failed: {}", op_name(h.op), describe_peer(peer), endpoint,
               e.what());
  }
}

void ZmqServerVan::Impl::reject(const std::string& peer, const Header* header, const std::string& reason) {
  const int64_t n = ++rejected;
  // A peer flooding us with garbage must not flood the log: the first 20, then every 1000th.
  if (n <= 20 || n % 1000 == 0) {
    log::warn("parameter server {}: rejected a message from peer {}: {}{}", endpoint, describe_peer(peer), reason,
              n > 20 ? fmt::format(" ({} rejected so far)", n) : std::string());
  }
  Header reply;
  reply.op = Op::error;
  if (header) {
    reply.seq = header->seq;
    reply.key = header->key;
  }
  try {
    // Never block on a peer that does not read its errors.
    if (!send(peer, reply, Payload::from_string(reason), /*dontwait=*/true)) {
      log::debug("parameter server {}: dropped the error reply to {} (its queue is full)", endpoint,
                 describe_peer(peer));
    }
  } catch (const Error& e) {
    log::debug("parameter server {}: could not send the error reply: {}", endpoint, e.what());
  }
}

std::optional<Message> ZmqServerVan::Impl::accept(std::vector<zmq::message_t>& parts, size_t count) {
  const std::string peer = parts[0].to_string();
  if (count != 3) {
    reject(peer, nullptr, fmt::format("expected 2 frames (header, payload), got {}", count - 1));
    return std::nullopt;
  }
  Header header;
  try {
    header = decode_header(parts[1].data<uint8_t>(), parts[1].size(), options.limits);
  } catch (const ProtocolError& e) {
    reject(peer, nullptr, e.what());
    return std::nullopt;
  }
  try {
    check_payload(header, parts[2].size());
  } catch (const ProtocolError& e) {
    reject(peer, &header, e.what());
    return std::nullopt;
  }

  if (header.op == Op::hello) {
    const std::string_view token(parts[2].data<char>(), parts[2].size());
    const std::string& expected = options.token;
    if (!constant_time_equal(token, expected)) {
      reject(peer, &header,
             expected.empty() ? "unexpected token: this server has none (unset LOOM_PS_TOKEN on the worker)"
             : token.empty()  ? "missing token: this server requires LOOM_PS_TOKEN"
                              : "wrong token");
      return std::nullopt;
    }
    Header ack;
    ack.op = Op::hello_ack;
    ack.seq = header.seq;
    ack.key = options.limits.max_payload_bytes;  // the client checks that its payloads fit
    try {
      // Not blocking: a peer that says hello without reading must not stall the server.
      if (!send(peer, ack, {}, /*dontwait=*/true)) LOOM_THROW(CommError, "its queue is full");
    } catch (const Error& e) {
      log::warn("parameter server {}: could not acknowledge the hello of worker {}: {}", endpoint, header.worker,
                e.what());
      return std::nullopt;
    }
    workers[peer] = header.worker;
    log::debug("parameter server {}: hello from worker {} (peer {})", endpoint, header.worker, describe_peer(peer));
    return Message{header, Payload{}, peer};
  }

  const auto known = workers.find(peer);
  if (known == workers.end()) {
    reject(peer, &header, fmt::format("{} from a peer that has not said hello", op_name(header.op)));
    return std::nullopt;
  }
  if (known->second != header.worker) {
    reject(peer, &header,
           fmt::format("{} claims worker {}, but this peer said hello as worker {}", op_name(header.op), header.worker,
                       known->second));
    return std::nullopt;
  }
  return Message{header, payload_of(std::move(parts[2])), peer};
}

ZmqServerVan::ZmqServerVan(std::string endpoint, VanOptions options)
    : impl_(std::make_unique<Impl>(std::move(endpoint), std::move(options))) {}
ZmqServerVan::~ZmqServerVan() = default;
ZmqServerVan::ZmqServerVan(ZmqServerVan&&) noexcept = default;
ZmqServerVan& ZmqServerVan::operator=(ZmqServerVan&&) noexcept = default;

std::string ZmqServerVan::endpoint() const { return impl_->endpoint; }
int64_t ZmqServerVan::rejected() const { return impl_->rejected.load(); }

std::optional<Message> ZmqServerVan::receive(milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    // identity + header + payload, and one more to tell "3" from "more than 3"
    const size_t count = receive_within(impl_->socket, impl_->frames, 4, deadline, "parameter server", impl_->endpoint);
    if (count == 0) return std::nullopt;
    if (auto message = impl_->accept(impl_->frames, count)) return message;
    if (Clock::now() >= deadline) return std::nullopt;
  }
}

void ZmqServerVan::send(const std::string& peer, const Header& header, Payload payload) {
  if (!impl_->send(peer, header, payload, /*dontwait=*/false)) {
    LOOM_THROW(TimeoutError, "sending {} to peer {} from {} timed out after {} ms (the worker is not reading)",
               op_name(header.op), describe_peer(peer), impl_->endpoint, impl_->options.timeout.count());
  }
}

// ---- ZmqClientVan ----------------------------------------------------------------------

struct ZmqClientVan::Impl {
  Impl(std::string ep, uint32_t id, VanOptions opts)
      : options(std::move(opts)),
        context(context_for(options)),
        socket(context->impl().context, zmq::socket_type::dealer),
        endpoint(std::move(ep)),
        worker_id(id) {
    socket.set(zmq::sockopt::linger, 0);
    socket.set(zmq::sockopt::routing_id, client_identity(worker_id));
    socket.set(zmq::sockopt::maxmsgsize, frame_limit(options.limits));
    socket.set(zmq::sockopt::sndtimeo, timeout_ms(options.timeout));
    if (!options.curve.empty()) {
      // One key pair per job: the server's public key is the job's, and so is ours.
      socket.set(zmq::sockopt::curve_serverkey, options.curve.public_key);
      socket.set(zmq::sockopt::curve_publickey, options.curve.public_key);
      socket.set(zmq::sockopt::curve_secretkey, options.curve.secret_key);
    } else {
      LOOM_CHECK(options.insecure || is_local_endpoint(endpoint), ConfigError,
                 "refusing to connect to the parameter server at {} without encryption or authentication: give the "
                 "job a CURVE key ({} or {}, see `loom ps-keygen`) or pass --insecure",
                 endpoint, kCurveKeyFileEnv, kCurveSecretEnv);
    }
    try {
      socket.connect(endpoint);
    } catch (const zmq::error_t& e) {
      LOOM_THROW(CommError, "cannot connect to the parameter server at {}: {}", endpoint, e.what());
    }
  }

  VanOptions options;
  std::shared_ptr<ZmqContext> context;  // outlives the socket (declared before it)
  zmq::socket_t socket;
  std::string endpoint;
  uint32_t worker_id;
  std::vector<zmq::message_t> frames;
};

ZmqClientVan::ZmqClientVan(std::string endpoint, uint32_t worker_id, VanOptions options)
    : impl_(std::make_unique<Impl>(std::move(endpoint), worker_id, std::move(options))) {
  const auto deadline = Clock::now() + impl_->options.timeout;
  Header hello;
  hello.op = Op::hello;
  send(hello, Payload::from_string(impl_->options.token));
  const auto left = std::max(milliseconds(0), std::chrono::duration_cast<milliseconds>(deadline - Clock::now()));
  std::optional<Message> reply = receive(left);
  LOOM_CHECK(reply, TimeoutError, "no answer from the parameter server at {} within {} ms (is it running{}?)",
             impl_->endpoint, impl_->options.timeout.count(),
             impl_->options.curve.empty() ? "" : ", with this job's CURVE key");
  if (reply->header.op == Op::error) {
    LOOM_THROW(CommError, "server at {} rejected the handshake: {}", impl_->endpoint, reply->payload.bytes());
  }
  LOOM_CHECK(reply->header.op == Op::hello_ack, ProtocolError,
             "server at {} answered the handshake with {} instead of hello_ack", impl_->endpoint,
             op_name(reply->header.op));
  // ZeroMQ would drop a larger frame and close the connection: say so now, not as a
  // timeout later. (0: a server that does not announce its limit.)
  const uint64_t server_limit = reply->header.key;
  LOOM_CHECK(server_limit == 0 || server_limit >= impl_->options.limits.max_payload_bytes, CommError,
             "server at {} accepts payloads of at most {} bytes, but this worker's limit is {} bytes (do both "
             "sides use the same --ps-slice-mb?)",
             impl_->endpoint, server_limit, impl_->options.limits.max_payload_bytes);
}
ZmqClientVan::~ZmqClientVan() = default;
ZmqClientVan::ZmqClientVan(ZmqClientVan&&) noexcept = default;
ZmqClientVan& ZmqClientVan::operator=(ZmqClientVan&&) noexcept = default;

const std::string& ZmqClientVan::endpoint() const { return impl_->endpoint; }
uint32_t ZmqClientVan::worker_id() const { return impl_->worker_id; }

void ZmqClientVan::send(const Header& header, Payload payload) {
  Header h = header;
  h.version = kProtocolVersion;
  h.worker = impl_->worker_id;
  h.payload_bytes = payload.size;
  try {
    check_header(h, impl_->options.limits);
  } catch (const ProtocolError& e) {
    LOOM_THROW(ProtocolError, "refusing to send an invalid {} to {}: {}", op_name(h.op), impl_->endpoint, e.what());
  }
  bool sent = false;
  try {
    zmq::message_t parts[2] = {header_frame(h), payload_frame(payload)};
    sent = send_frames(impl_->socket, parts, 2, /*dontwait=*/false);
  } catch (const zmq::error_t& e) {
    LOOM_THROW(CommError, "sending {} to the parameter server at {} failed: {}", op_name(h.op), impl_->endpoint,
               e.what());
  }
  LOOM_CHECK(sent, TimeoutError, "sending {} to the parameter server at {} timed out after {} ms", op_name(h.op),
             impl_->endpoint, impl_->options.timeout.count());
}

std::optional<Message> ZmqClientVan::receive(milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  const size_t count =
      receive_within(impl_->socket, impl_->frames, 3, deadline, "client of the parameter server at", impl_->endpoint);
  if (count == 0) return std::nullopt;
  auto& parts = impl_->frames;
  LOOM_CHECK(count == 2, ProtocolError, "malformed reply from the parameter server at {}: expected 2 frames, got {}",
             impl_->endpoint, count);
  Header header;
  try {
    header = decode_header(parts[0].data<uint8_t>(), parts[0].size(), impl_->options.limits);
    check_payload(header, parts[1].size());
  } catch (const ProtocolError& e) {
    LOOM_THROW(ProtocolError, "malformed reply from the parameter server at {}: {}", impl_->endpoint, e.what());
  }
  return Message{header, payload_of(std::move(parts[1])), std::string()};
}

int ZmqClientVan::poll_any(const std::vector<ZmqClientVan*>& vans, std::chrono::milliseconds timeout) {
  std::vector<zmq::pollitem_t> items;
  items.reserve(vans.size());
  for (ZmqClientVan* v : vans) items.push_back({v->impl_->socket.handle(), 0, ZMQ_POLLIN, 0});
  const auto deadline = Clock::now() + timeout;
  while (true) {
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    try {
      zmq::poll(items.data(), items.size(), std::max<milliseconds>(left, milliseconds(0)));
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;
      LOOM_THROW(CommError, "polling the parameter servers failed: {}", e.what());
    }
    for (size_t i = 0; i < items.size(); ++i) {
      if (items[i].revents & ZMQ_POLLIN) return static_cast<int>(i);
    }
    if (Clock::now() >= deadline) return -1;
  }
}

}  // namespace loom::ps
