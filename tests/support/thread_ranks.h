// Ranks as threads of this test process: each thread builds its own comm::Context, and
// all of them rendezvous through one InProcessStore (no TCPStore, no port picked in
// advance; Gloo's connections between them use loopback TCP as in a real job).
#pragma once

#include <chrono>
#include <exception>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "loom/comm/context.h"
#include "loom/core/dist_env.h"

namespace loom::test {

// Runs fn(ctx) on `world` threads, rank r on thread r, with `options` (its timeout and
// shared_memory are used; the store is replaced by a fresh in-process one). Returns each
// rank's exception, or null.
inline std::vector<std::exception_ptr> run_thread_ranks(int world, const std::function<void(comm::Context&)>& fn,
                                                        comm::ContextOptions options) {
  options.in_process_store = std::make_shared<comm::InProcessStore>();
  std::vector<std::thread> threads;
  std::vector<std::exception_ptr> errors(world);
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      try {
        DistEnv env;
        env.rank = r;
        env.world_size = world;
        auto ctx = comm::Context::create(env, options);
        fn(*ctx);
      } catch (...) {
        errors[r] = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  return errors;
}

inline comm::ContextOptions with_timeout(std::chrono::milliseconds timeout) {
  comm::ContextOptions o;
  o.timeout = timeout;
  return o;
}

}  // namespace loom::test
