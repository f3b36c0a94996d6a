// The parameter server's transport ("van", after ps-lite), over ZeroMQ: moves messages
// (message.h) between workers and servers, and nothing else. There is one transport, so
// it is named for what it is rather than hidden behind an interface. One ROUTER socket per server
// (ZmqServerVan), one DEALER per worker and server pair (ZmqClientVan).
//
// A message is two ZeroMQ frames: [header: kHeaderBytes, see protocol.h][payload bytes]
// (the payload frame may be empty); the ROUTER prepends the peer's identity frame.
// Payload bytes are not copied by the van: a sent Payload's owner is kept alive until
// ZeroMQ has written the bytes (a Payload without an owner is copied once instead), and
// a received Payload points into the ZeroMQ message it owns.
//
// The handshake: a ZmqClientVan's first message is Op::hello with the shared token (or
// nothing) as payload; the ZmqServerVan answers hello_ack, or Op::error naming the cause
// (wrong protocol version, wrong or missing token), and serves a peer only after its
// hello (a ZmqClientVan's identity, "w<worker>-<random>", survives reconnects, so a dropped
// TCP connection does not need a new hello). Every message a ZmqServerVan cannot accept is answered with Op::error
// (payload = the one-line reason, seq and key echoed when the header decoded), logged, counted in rejected() and never
// returned; a peer's bad input never throws on the server.
//
// The token is a guard against connecting the wrong jobs, not encryption. Security is
// CURVE (VanOptions::curve, ZeroMQ's authenticated encryption): every process of a job
// holds the job's one key pair; a server admits only clients that prove they hold its
// secret key (a ZAP handler on the ZmqContext checks the client's public key), and all
// traffic is encrypted. Without a key pair a van refuses any endpoint that leaves the
// machine (is_local_endpoint) unless VanOptions::insecure. Threat model: "Security" in
// docs/parameter-server.md.
//
// Thread-safety: a ZeroMQ socket is not thread-safe, so each ZmqServerVan / ZmqClientVan must
// be used by one thread at a time (construct it anywhere, then call send/receive from a
// single thread, or guard it); rejected() and endpoint() may be read from any thread.
// ZmqContext is thread-safe. Vans are move-only.
//
// Errors (loom exceptions): CommError (cannot bind/connect, peer gone, handshake
// refused), TimeoutError (no answer / cannot send within the timeout), ProtocolError
// (malformed reply on the client; a header the caller built is invalid on send).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "loom/ps/message.h"
#include "loom/ps/protocol.h"
#include "loom/ps/van_options.h"

namespace loom::ps {

// A ZeroMQ context: the I/O threads that carry the vans' bytes. inproc:// endpoints
// connect only vans that share one context, so pass the same ZmqContext to both ends
// (VanOptions::context). A van without one makes its own (two threads: I/O and reaper),
// so a process with many vans should share one. Thread-safe; vans keep it alive.
class ZmqContext {
 public:
  explicit ZmqContext(int io_threads = 1);
  ~ZmqContext();
  ZmqContext(const ZmqContext&) = delete;
  ZmqContext& operator=(const ZmqContext&) = delete;

  // The ZeroMQ context itself: zmq_context.h, for the transport's own files (and tests
  // that play raw ZeroMQ peers).
  struct Impl;
  Impl& impl() const { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

// Server side: one ROUTER socket bound to an endpoint. See the file comment for the
// handshake, rejection and threading contracts.
class ZmqServerVan {
 public:
  // Binds to `endpoint`, e.g. "tcp://127.0.0.1:0" (port 0: the OS picks one) or
  // "inproc://name". Throws CommError naming the endpoint when it cannot bind, and
  // ConfigError when the endpoint leaves the machine without options.curve or insecure.
  ZmqServerVan(std::string endpoint, VanOptions options);
  ~ZmqServerVan();
  ZmqServerVan(ZmqServerVan&&) noexcept;
  ZmqServerVan& operator=(ZmqServerVan&&) noexcept;
  ZmqServerVan(const ZmqServerVan&) = delete;
  ZmqServerVan& operator=(const ZmqServerVan&) = delete;

  // The bound address, with the real port when 0 was given ("tcp://127.0.0.1:43121").
  std::string endpoint() const;

  // The next valid message, or nullopt when none arrived within `timeout` (0: only what
  // is already queued). A valid hello is answered with hello_ack and returned (its
  // payload, the token, is not); anything invalid is answered with Op::error and
  // skipped. Does not throw for anything a peer sends.
  std::optional<Message> receive(std::chrono::milliseconds timeout);

  // Sends `header` (version and payload_bytes are filled in) and the payload, without
  // copying it (see Payload; a payload without an owner is copied). Throws CommError
  // naming the peer when it is no longer connected, TimeoutError when its queue stays
  // full for the timeout, ProtocolError when the header is invalid (a caller bug).
  void send(const std::string& peer, const Header& header, Payload payload = {});

  // Messages rejected so far (malformed, refused handshakes, no hello).
  int64_t rejected() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Worker side: one DEALER socket connected to one server.
class ZmqClientVan {
 public:
  // Connects to `endpoint` and performs the handshake within options.timeout. Throws
  // TimeoutError ("no answer from the parameter server at tcp://...") when nothing
  // answers (with CURVE this is also what a server with another key pair looks like),
  // CommError when the server refuses ("server at tcp://... rejected the handshake:
  // wrong token") or the endpoint is invalid, ProtocolError on a malformed answer,
  // ConfigError as for ZmqServerVan; each names the endpoint.
  ZmqClientVan(std::string endpoint, uint32_t worker_id, VanOptions options);
  ~ZmqClientVan();
  ZmqClientVan(ZmqClientVan&&) noexcept;
  ZmqClientVan& operator=(ZmqClientVan&&) noexcept;
  ZmqClientVan(const ZmqClientVan&) = delete;
  ZmqClientVan& operator=(const ZmqClientVan&) = delete;

  // Sends `header` with worker, version and payload_bytes filled in, and the payload
  // (zero-copy, as ZmqServerVan::send). Throws TimeoutError when the server's queue stays
  // full for the timeout, ProtocolError when the header is invalid.
  void send(const Header& header, Payload payload = {});

  // The next reply, or nullopt on timeout. An Op::error reply is returned like any
  // other (the caller decides); a malformed reply throws ProtocolError naming the server.
  std::optional<Message> receive(std::chrono::milliseconds timeout);

  const std::string& endpoint() const;
  uint32_t worker_id() const;

  // Waits until one of `vans` has a message to receive, at most `timeout`. Returns its
  // index in `vans`, or -1 on timeout. Same threading rule as receive().
  static int poll_any(const std::vector<ZmqClientVan*>& vans, std::chrono::milliseconds timeout);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Compares in time that depends only on the lengths, not on where the bytes differ.
bool constant_time_equal(std::string_view a, std::string_view b);

// A ROUTER identity for logs: printable identities as they are, others as hex ("0x00801a2b3c").
std::string describe_peer(const std::string& peer);

}  // namespace loom::ps
