// Private to comm/. Liveness: who in a job is still running.
//
// Every rank stamps "loom/alive/<rank>" in the job's store with the wall-clock time once
// per period, from its own thread over its own store connection, so a rank stamps while
// it computes or waits. A stopped (SIGSTOP), hung-in-the-kernel or cut-off rank stops
// stamping. When a collective times out, silent() names the members whose stamp is
// stale, so the error says which rank went quiet and not only that something did.
// Stamps are compared with this host's clock: hosts are assumed to agree within a
// period (NTP), which holds on one machine and on any synchronised cluster.
//
// c10d's store client has no timeout on a silent server, so nothing here waits on it
// unguarded: the stamping thread is detached (a store that never answers holds only
// that thread) and silent() gives up on the store after a few seconds.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "loom/core/dist_env.h"

namespace c10d {
class Store;
}

namespace loom::comm {

class Liveness {
 public:
  // Connects to the job's store (MASTER_ADDR:MASTER_PORT, which must be up), stamps
  // once, then every `period` from a thread. Null for a one-process job.
  static std::shared_ptr<Liveness> start(const DistEnv& env,
                                         std::chrono::milliseconds period = std::chrono::seconds(1));
  ~Liveness();
  Liveness(const Liveness&) = delete;
  Liveness& operator=(const Liveness&) = delete;

  // Of `global_ranks` (other than this one): "rank 1 (last heard 6.2 s ago)" for each
  // one silent for more than 3 periods, joined by ", "; "" when all are alive. When the
  // store itself does not answer, rank 0 (which hosts it) is named. Blocks at most a
  // few seconds.
  std::string silent(const std::vector<int>& global_ranks);

 private:
  struct Beat;  // the stamping thread's state, shared with it (it may outlive this)
  Liveness(DistEnv env, std::chrono::milliseconds period);

  DistEnv env_;
  std::chrono::milliseconds period_;
  std::shared_ptr<Beat> beat_;
  std::shared_ptr<c10d::Store> query_store_;  // silent()'s connection
};

}  // namespace loom::comm
