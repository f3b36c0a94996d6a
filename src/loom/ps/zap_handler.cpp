#include "loom/ps/zap_handler.h"

#include <cerrno>
#include <chrono>

#include <fmt/format.h>

#include "loom/core/error.h"
#include "loom/core/log.h"
#include "loom/ps/zmq_van.h"

namespace loom::ps {

ZapHandler::ZapHandler(zmq::context_t& context) : socket_(context, zmq::socket_type::rep) {
  socket_.set(zmq::sockopt::linger, 0);
  try {
    socket_.bind("inproc://zeromq.zap.01");
  } catch (const zmq::error_t& e) {
    LOOM_THROW(CommError, "cannot start the CURVE authenticator (inproc://zeromq.zap.01): {}", e.what());
  }
  thread_ = std::thread([this] { run(); });
}

ZapHandler::~ZapHandler() {
  stop_ = true;
  thread_.join();
}

std::string ZapHandler::admit(const std::string& public_key) {
  std::lock_guard<std::mutex> lock(mutex_);
  std::string domain = fmt::format("loom-ps-{}", next_domain_++);
  allowed_[domain] = public_key;
  return domain;
}

void ZapHandler::forget(const std::string& domain) {
  std::lock_guard<std::mutex> lock(mutex_);
  allowed_.erase(domain);
}

void ZapHandler::run() {
  std::vector<zmq::message_t> request;
  while (!stop_) {
    zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
    try {
      if (zmq::poll(&item, 1, std::chrono::milliseconds(100)) <= 0) continue;
      request.clear();
      for (;;) {
        zmq::message_t frame;
        if (!socket_.recv(frame, zmq::recv_flags::none)) break;
        const bool more = frame.more();
        request.push_back(std::move(frame));
        if (!more) break;
      }
      answer(request);
    } catch (const zmq::error_t& e) {
      if (e.num() == ETERM) return;
      if (e.num() != EINTR) log::warn("parameter-server CURVE authenticator: {}", e.what());
    }
  }
}

// Request: version, request id, domain, address, routing id, mechanism, credentials
// (CURVE: the client's 32-byte public key). Reply: version, request id, status code,
// status text, user id, metadata.
void ZapHandler::answer(const std::vector<zmq::message_t>& request) {
  const bool well_formed = request.size() >= 7 && request[0].to_string_view() == "1.0";
  bool admitted = false;
  if (well_formed && request[5].to_string_view() == "CURVE") {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = allowed_.find(request[2].to_string());
    admitted = it != allowed_.end() && constant_time_equal(it->second, request[6].to_string_view());
  }
  // A refused client reconnects every 100 ms: the first 20 refusals, then every 1000th.
  if (!admitted && (++refused_ <= 20 || refused_ % 1000 == 0)) {
    log::warn("parameter server: refused a CURVE client from {}: it does not hold this job's key ({} refused so far)",
              well_formed ? request[3].to_string() : std::string("?"), refused_);
  }
  const std::string id = request.size() >= 2 ? request[1].to_string() : std::string();
  const std::string code = admitted ? "200" : "400";
  const std::string text = admitted ? "OK" : "not this job's key";
  const std::string* parts[] = {nullptr, &id, &code, &text, nullptr, nullptr};
  for (size_t i = 0; i < 6; ++i) {
    const std::string value = i == 0 ? std::string("1.0") : parts[i] ? *parts[i] : std::string();
    socket_.send(zmq::buffer(value), i + 1 < 6 ? zmq::send_flags::sndmore : zmq::send_flags::none);
  }
}

}  // namespace loom::ps
