// ZmqContext's insides: the ZeroMQ context and its ZAP handler. For the transport's own
// files, and for tests that play raw ZeroMQ peers on the vans' inproc:// endpoints;
// nothing else in loom sees a ZeroMQ type.
#pragma once

#include <memory>
#include <mutex>
#include <zmq.hpp>

#include "loom/ps/zap_handler.h"
#include "loom/ps/zmq_van.h"

namespace loom::ps {

struct ZmqContext::Impl {
  explicit Impl(int io_threads) : context(std::max(1, io_threads)) {}
  // The context's ZAP handler, started by its first CURVE server.
  ZapHandler& zap() {
    std::lock_guard<std::mutex> lock(zap_mutex);
    if (!zap_handler) zap_handler = std::make_unique<ZapHandler>(context);
    return *zap_handler;
  }
  zmq::context_t context;
  std::mutex zap_mutex;
  std::unique_ptr<ZapHandler> zap_handler;  // destroyed (its socket closed) before the context
};

}  // namespace loom::ps
