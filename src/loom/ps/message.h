// A parameter-server message as the server and worker see it: a header (protocol.h), the
// payload bytes, and (on the server) the peer that sent it. The transport (zmq_van.h)
// moves them.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "loom/ps/protocol.h"

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

}  // namespace loom::ps
