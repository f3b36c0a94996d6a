// Private to ps/: the CURVE servers' authenticator, one per ZeroMQ context.
#pragma once

#include <zmq.hpp>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace loom::ps {

// ZeroMQ's authentication hook (ZAP, RFC 27) for the CURVE servers of one context: a REP
// socket on inproc://zeromq.zap.01, served by its own thread. ZeroMQ asks it about every
// client that completed the CURVE handshake (so the client holds the secret key of the
// public key it presents); it admits the client only when that public key is the one
// registered for the server's ZAP domain: the job's own.
class ZapHandler {
 public:
  // Binds inproc://zeromq.zap.01 in `context` (CommError if another handler has) and
  // starts the thread; the destructor stops it within 100 ms.
  explicit ZapHandler(zmq::context_t& context);
  ~ZapHandler();
  ZapHandler(const ZapHandler&) = delete;
  ZapHandler& operator=(const ZapHandler&) = delete;

  // A new ZAP domain whose only admitted client public key is `public_key` (32 bytes).
  // Thread-safe.
  std::string admit(const std::string& public_key);
  void forget(const std::string& domain);

 private:
  void run();
  void answer(const std::vector<zmq::message_t>& request);

  zmq::socket_t socket_;
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::unordered_map<std::string, std::string> allowed_;  // domain -> client public key (binary)
  uint64_t next_domain_ = 0;
  int64_t refused_ = 0;  // the ZAP thread's own
  std::thread thread_;   // last: starts after everything it uses exists
};

}  // namespace loom::ps
