// The parameter server's transport ("van", after ps-lite): moves messages between
// workers and servers over ZeroMQ, and nothing else. One ROUTER socket per server
// (ServerVan), one DEALER per worker and server pair (ClientVan).
//
// A message is two ZeroMQ frames: [header: kHeaderBytes, see protocol.h][payload bytes]
// (the payload frame may be empty); the ROUTER prepends the peer's identity frame.
// Payload bytes are not copied by the van: a sent Payload's owner is kept alive until
// ZeroMQ has written the bytes (a Payload without an owner is copied once instead), and
// a received Payload points into the ZeroMQ message it owns.
//
// The handshake: a ClientVan's first message is Op::hello with the shared token (or
// nothing) as payload; the ServerVan answers hello_ack, or Op::error naming the cause
// (wrong protocol version, wrong or missing token), and serves a peer only after its
// hello (a ClientVan's identity, "w<worker>-<random>", survives reconnects, so a dropped
// TCP connection does not need a new hello). Every message a ServerVan cannot accept is answered with Op::error
// (payload = the one-line reason, seq and key echoed when the header decoded), logged, counted in rejected() and never
// returned; a peer's bad input never throws on the server.
//
// The token is a guard against connecting the wrong jobs, not encryption. Security is
// CURVE (VanOptions::curve, ZeroMQ's authenticated encryption): every process of a job
// holds the job's one key pair; a server admits only clients that prove they hold its
// secret key (a ZAP handler on the VanContext checks the client's public key), and all
// traffic is encrypted. Without a key pair a van refuses any endpoint that leaves the
// machine (is_local_endpoint) unless VanOptions::insecure. Threat model: "Security" in
// docs/parameter-server.md.
//
// Thread-safety: a ZeroMQ socket is not thread-safe, so each ServerVan / ClientVan must
// be used by one thread at a time (construct it anywhere, then call send/receive from a
// single thread, or guard it); rejected() and endpoint() may be read from any thread.
// VanContext is thread-safe. Vans are move-only.
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

#include "loom/ps/protocol.h"
#include "loom/ps/van_options.h"

namespace loom::ps {

// Bytes that stay valid while the Payload (or a copy of it) lives. `owner` keeps the
// memory alive (a zmq::message_t on receive, a tensor or buffer on send); it may be
// released on a ZeroMQ I/O thread once the bytes are written. On receive, `owner` is a
// std::shared_ptr<zmq::message_t> and `data` points into that message. The data has no
// alignment guarantee: copy before reading it as a typed array if alignment matters.
struct Payload {
  const void* data = nullptr;
  size_t size = 0;
  std::shared_ptr<void> owner;

  // A payload that owns `bytes` (moved in): for reasons, tokens, small commands.
  static Payload from_string(std::string bytes);
  std::string_view bytes() const { return {static_cast<const char*>(data), size}; }
};

struct Message {
  Header header;
  Payload payload;
  std::string peer;  // ROUTER identity of the sender (server side only), opaque bytes
};

// A ZeroMQ context: the I/O threads that carry the vans' bytes. inproc:// endpoints
// connect only vans that share one context, so pass the same VanContext to both ends
// (VanOptions::context). A van without one makes its own (two threads: I/O and reaper),
// so a process with many vans should share one. Thread-safe; vans keep it alive.
class VanContext {
 public:
  explicit VanContext(int io_threads = 1);
  ~VanContext();
  VanContext(const VanContext&) = delete;
  VanContext& operator=(const VanContext&) = delete;

  // ZeroMQ's context handle (as from zmq_ctx_new), e.g. for a raw socket in a test.
  void* native_handle() const;

  struct Impl;  // defined by the transport implementation
  Impl& impl() const { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

// Server side: one ROUTER socket bound to an endpoint. See the file comment for the
// handshake, rejection and threading contracts.
class ServerVan {
 public:
  // Binds to `endpoint`, e.g. "tcp://127.0.0.1:0" (port 0: the OS picks one) or
  // "inproc://name". Throws CommError naming the endpoint when it cannot bind, and
  // ConfigError when the endpoint leaves the machine without options.curve or insecure.
  ServerVan(std::string endpoint, VanOptions options);
  ~ServerVan();
  ServerVan(ServerVan&&) noexcept;
  ServerVan& operator=(ServerVan&&) noexcept;
  ServerVan(const ServerVan&) = delete;
  ServerVan& operator=(const ServerVan&) = delete;

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
class ClientVan {
 public:
  // Connects to `endpoint` and performs the handshake within options.timeout. Throws
  // TimeoutError ("no answer from the parameter server at tcp://...") when nothing
  // answers (with CURVE this is also what a server with another key pair looks like),
  // CommError when the server refuses ("server at tcp://... rejected the handshake:
  // wrong token") or the endpoint is invalid, ProtocolError on a malformed answer,
  // ConfigError as for ServerVan; each names the endpoint.
  ClientVan(std::string endpoint, uint32_t worker_id, VanOptions options);
  ~ClientVan();
  ClientVan(ClientVan&&) noexcept;
  ClientVan& operator=(ClientVan&&) noexcept;
  ClientVan(const ClientVan&) = delete;
  ClientVan& operator=(const ClientVan&) = delete;

  // Sends `header` with worker, version and payload_bytes filled in, and the payload
  // (zero-copy, as ServerVan::send). Throws TimeoutError when the server's queue stays
  // full for the timeout, ProtocolError when the header is invalid.
  void send(const Header& header, Payload payload = {});

  // The next reply, or nullopt on timeout. An Op::error reply is returned like any
  // other (the caller decides); a malformed reply throws ProtocolError naming the server.
  std::optional<Message> receive(std::chrono::milliseconds timeout);

  const std::string& endpoint() const;
  uint32_t worker_id() const;

  // Waits until one of `vans` has a message to receive, at most `timeout`. Returns its
  // index in `vans`, or -1 on timeout. Same threading rule as receive().
  static int poll_any(const std::vector<ClientVan*>& vans, std::chrono::milliseconds timeout);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Compares in time that depends only on the lengths, not on where the bytes differ.
bool constant_time_equal(std::string_view a, std::string_view b);

// A ROUTER identity for logs: printable identities as they are, others as hex ("0x00801a2b3c").
std::string describe_peer(const std::string& peer);

}  // namespace loom::ps
