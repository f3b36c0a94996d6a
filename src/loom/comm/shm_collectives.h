// Private to comm/: allreduce, reduce-scatter and all-gather through shared memory for
// groups whose ranks all run on one machine (the common case on a workstation, and the fast path of every multi-GPU-
// less host). Gloo's TCP allreduce over loopback costs milliseconds per bucket here;
// memory copies cost microseconds.
//
// Setup (ShmCollectives::connect, collective over the group, through its store): every
// rank publishes its machine identity (boot id, hostname, mount namespace); if all agree,
// group rank 0 creates a POSIX shared-memory segment, every rank maps it and says whether
// it could; only if every rank could does the group use it (otherwise connect() returns
// null and the group keeps Gloo). The segment's name is unlinked as soon as everyone has
// mapped it, so nothing is left in /dev/shm if a process dies.
//
// One allreduce (sum of float32 or float64 tensors), per chunk of at most `capacity`
// bytes: each rank copies its chunk, all but its own partition, into its slot; barrier;
// rank r sums partition r over the ranks (in rank order: every rank gets bitwise the
// same result; its own term read from its tensor) into its tensor and the result area;
// barrier; each rank copies the other partitions out. Barriers are per-rank arrival
// counters in the segment: a waiter spins for at most 20 us, then sleeps on a futex; an
// arriving rank makes the wake-up system call only when someone sleeps. Operations run
// in order on one thread per group, so they are asynchronous like Gloo's and overlap
// the caller's work; a thread that waits for an operation the group's thread has not
// started runs the queued operations up to it itself (MPI's progress in wait), so a
// collective waited for at once costs no hand-off between threads.
//
// Failure: a wait is bounded by the group's timeout (TimeoutError naming the ranks that
// did not arrive); a peer process that exits is noticed within 50 ms (CommError naming
// its rank and pid). After a failure every later operation fails with the same error.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/csrc/distributed/c10d/Store.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace loom::comm {

class QueuedWork;
class ShmP2p;

class ShmCollectives {
 public:
  struct Options {
    int64_t capacity_bytes = 1 << 20;  // per slot; larger tensors go in windows of this size
    // false: connect() returns null on every rank (ContextOptions::shared_memory). Every
    // rank must pass the same value; a group whose ranks disagree keeps Gloo.
    bool enabled = true;
    // Each point-to-point ring (shm_p2p.h), in the same segment, for groups of at most
    // ShmP2p::kMaxRanks; 0: none (point-to-point stays on Gloo).
    int64_t p2p_ring_bytes = 4 << 20;  // a multiple of 4096
  };
  // Collective over the group's members (group rank `rank` of `size`). Null when the
  // ranks are not all on this machine or shared memory is unavailable.
  // `global_ranks` name the members in errors.
  static std::unique_ptr<ShmCollectives> connect(c10d::Store& store, int rank, int size, const std::string& group_name,
                                                 const std::vector<int>& global_ranks,
                                                 std::chrono::milliseconds timeout, Options options);
  ~ShmCollectives();

  // Whether allreduce() takes these tensors (dense contiguous CPU float32 / float64).
  static bool accepts(const std::vector<at::Tensor>& tensors);
  // Sums the tensors in place across the group, asynchronously. The tensors must stay
  // alive and untouched until the returned work completes.
  c10::intrusive_ptr<c10d::Work> allreduce(std::vector<at::Tensor> tensors);
  // Group::reduce_scatter / all_gather (the caller checked the arguments), in the same
  // queue as allreduce. Window k holds the k-th piece of every rank's range (within
  // the slots, never the result area: see all_gather in the .cpp). reduce_scatter:
  // each rank copies the others' pieces into its slot; barrier; each sums its own piece
  // over the slots (its own term from its buffer) in rank order, as allreduce does, so
  // its range is bitwise allreduce's; barrier. all_gather: each rank copies its piece
  // in; barrier; each copies the others' out; barrier.
  c10::intrusive_ptr<c10d::Work> reduce_scatter(at::Tensor buffer, std::vector<int64_t> counts);
  c10::intrusive_ptr<c10d::Work> all_gather(at::Tensor buffer, std::vector<int64_t> counts);

  // The group's point-to-point rings, or null (too many ranks, or turned off).
  ShmP2p* p2p();
  // Bytes of /dev/shm the segment holds now (its rings grow when first used).
  int64_t allocated_bytes() const;

  // The operations the queue runs.
  enum class Kind { allreduce, reduce_scatter, all_gather };

  struct Impl;

 private:
  explicit ShmCollectives(std::unique_ptr<Impl> impl);
  c10::intrusive_ptr<c10d::Work> enqueue(Kind kind, at::Tensor buffer, std::vector<int64_t> counts);
  c10::intrusive_ptr<QueuedWork> new_work();  // one whose wait() runs queued operations (help)
  std::shared_ptr<Impl> impl_;                // shared with the works' helpers, which hold it weakly
};

// Test only (tests/unit/comm): group rank `rank` of every shared-memory group in this
// process pauses for `pause` between an allreduce window's last barrier and its copy-out,
// as a peer descheduled there would; the hazard of Note [result area] is then certain.
// rank < 0: no pause (the default).
void set_copy_out_pause_for_tests(int rank, std::chrono::microseconds pause);

}  // namespace loom::comm
