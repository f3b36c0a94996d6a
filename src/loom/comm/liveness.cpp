#include "loom/comm/liveness.h"

#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <fmt/format.h>

#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>

#include "loom/core/log.h"

namespace loom::comm {

namespace {

constexpr auto kQueryTimeout = std::chrono::seconds(3);

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string key_of(int rank) { return "loom/alive/" + std::to_string(rank); }

std::shared_ptr<c10d::Store> connect(const DistEnv& env) {
  c10d::TCPStoreOptions so;
  so.port = static_cast<uint16_t>(env.master_port);
  so.isServer = false;
  so.waitWorkers = false;
  so.timeout = kQueryTimeout;
  auto store = std::make_shared<c10d::TCPStore>(env.master_addr, so);
  store->setTimeout(kQueryTimeout);
  return store;
}

// Of `ranks` other than `self`, those whose stamp is older than 3 periods at `now`.
std::string stale_ranks(c10d::Store& store, int self, std::chrono::milliseconds period, const std::vector<int>& ranks,
                        int64_t now) {
  std::string out;
  for (int r : ranks) {
    if (r == self) continue;
    const std::string key = key_of(r);
    if (!store.check({key})) {
      out += fmt::format("{}rank {} (never heard)", out.empty() ? "" : ", ", r);
      continue;
    }
    const auto bytes = store.get(key);
    const double age_s = static_cast<double>(now - std::stoll(std::string(bytes.begin(), bytes.end()))) / 1e3;
    if (age_s * 1e3 > 3.0 * static_cast<double>(period.count())) {
      out += fmt::format("{}rank {} (last heard {:.1f} s ago)", out.empty() ? "" : ", ", r, age_s);
    }
  }
  return out;
}

}  // namespace

struct Liveness::Beat {
  std::mutex mutex;
  std::condition_variable cv;
  bool stop = false;
  std::shared_ptr<c10d::Store> store;
  std::string key;

  void stamp() {
    const std::string value = std::to_string(now_ms());
    store->set(key, std::vector<uint8_t>(value.begin(), value.end()));
  }
};

std::shared_ptr<Liveness> Liveness::start(const DistEnv& env, std::chrono::milliseconds period) {
  if (env.world_size <= 1) return nullptr;
  std::shared_ptr<Liveness> l(new Liveness(env, period));
  auto beat = std::make_shared<Beat>();
  beat->key = key_of(env.rank);
  try {
    beat->store = connect(env);
    l->query_store_ = connect(env);
    beat->stamp();
  } catch (const std::exception& e) {
    // Diagnosis only: a job runs without it (errors then name the operation alone).
    log::debug("liveness stamps are off: {}", std::string(e.what()).substr(0, std::string(e.what()).find('\n')));
    return nullptr;
  }
  l->beat_ = beat;
  std::thread([beat, period] {
    std::unique_lock<std::mutex> lock(beat->mutex);
    while (!beat->cv.wait_for(lock, period, [&] { return beat->stop; })) {
      lock.unlock();
      try {
        beat->stamp();
      } catch (const std::exception&) {
        // The store is gone (the job is ending) or slow (rank 0 is silent): keep trying.
      }
      lock.lock();
    }
  }).detach();
  return l;
}

Liveness::Liveness(DistEnv env, std::chrono::milliseconds period) : env_(std::move(env)), period_(period) {}

Liveness::~Liveness() {
  if (!beat_) return;
  {
    std::lock_guard<std::mutex> lock(beat_->mutex);
    beat_->stop = true;
  }
  beat_->cv.notify_all();
}

std::string Liveness::silent(const std::vector<int>& global_ranks) {
  // On a thread of its own: a silent store would block it forever.
  auto answer = std::make_shared<std::promise<std::string>>();
  std::future<std::string> result = answer->get_future();
  const int64_t now = now_ms();
  // Everything by value: the thread may outlive this object.
  std::thread([store = query_store_, answer, global_ranks, now, self = env_.rank, period = period_] {
    try {
      answer->set_value(stale_ranks(*store, self, period, global_ranks, now));
    } catch (...) {
      answer->set_exception(std::current_exception());
    }
  }).detach();
  const std::string store_silent = fmt::format(
      "rank 0 (the job's store, which it hosts at {}:{}, does not answer either)", env_.master_addr, env_.master_port);
  if (result.wait_for(kQueryTimeout) != std::future_status::ready) return store_silent;
  try {
    return result.get();
  } catch (const std::exception&) {
    return store_silent;
  }
}

}  // namespace loom::comm
