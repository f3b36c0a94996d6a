// Private to comm/: the c10d objects behind Work, Group and Context.
#pragma once

#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>

#include <atomic>
#include <chrono>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "loom/comm/group.h"
#include "loom/comm/liveness.h"
#include "loom/comm/ring_collectives.h"
#include "loom/comm/shm_collectives.h"
#include "loom/comm/work.h"

namespace loom::comm {

struct Work::Impl {
  c10::intrusive_ptr<c10d::Work> work;
  std::string what;  // "allreduce on group 'world'"
  std::chrono::milliseconds timeout;
  bool waited = false;
  std::exception_ptr error;  // the loom error of a failed wait(), rethrown by every later wait()
  int source_rank = -1;
  const void* callback_future = nullptr;  // set by on_completion; a TSan sync address only
  // On a timeout: who of `members` (global ranks) went silent. Null: no diagnosis.
  std::shared_ptr<Liveness> liveness;
  std::vector<int> members;
};

struct Group::Impl {
  c10::intrusive_ptr<c10d::ProcessGroup> pg;
  // Sum-allreduce of float tensors through shared memory when every member runs on
  // this machine (shm_collectives.h); null otherwise. Everything else goes through pg.
  std::unique_ptr<ShmCollectives> shm;
  // Reduce-scatter and all-gather when `shm` is null: a ring over pg's send/recv, made
  // on first use (its thread exists only in groups that use it).
  std::unique_ptr<RingCollectives> ring;
  std::once_flag ring_once;
  RingCollectives& ring_engine();
  // Allreduces issued through each transport (Group::allreduce_counts).
  std::atomic<int64_t> shm_allreduces{0};
  std::atomic<int64_t> c10d_allreduces{0};
  // The shared-memory rings for a point-to-point message of `tensors`, or null (Gloo).
  ShmP2p* p2p_for(const std::vector<at::Tensor>& tensors) const;
  std::string name;
  std::vector<int> global_ranks;
  std::chrono::milliseconds timeout;
  std::shared_ptr<Liveness> liveness;  // null for a one-process job
};

// Runs `fn` (which calls into c10d) and converts c10 / std exceptions into CommError or
// TimeoutError prefixed with `what`.
[[noreturn]] void rethrow_as_comm_error(const std::string& what);

}  // namespace loom::comm
