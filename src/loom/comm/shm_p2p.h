// Private to comm/: tagged point-to-point messages through shared memory, for groups
// whose ranks all run on one machine (Group::send / recv / recv_any when the group has
// a shared-memory segment: shm_collectives.h makes the rings in it).
//
// Why: a Gloo send of a pipeline activation (134 KB) cost the sending stage 0.2-0.4 ms
// of its compute thread here (loopback TCP, and Gloo's I/O threads waking on busy
// cores), on the pipeline's critical path every micro-batch (issue 19,
// docs/performance.md). A copy into shared memory costs about 15 us.
//
// Layout: one ring per ordered pair of ranks (src -> dst), `ring_bytes` of data. Only
// a ring's header and first page are allocated with the segment; its sender allocates
// the rest when it first sends (a pipeline's stages use 2 of a group's size x (size - 1)
// rings), and a ring whose allocation fails (a full /dev/shm) stays one page long, its
// big messages redirected (below). A
// message is a record: a 64-byte header (tag, bytes, kind) and the tensor's bytes,
// padded to 64. The sender copies the record in and publishes it (its ring's head);
// the receiver copies it out when it waits for it, and frees it (the ring's tail).
// Records are read in the order they were sent; one whose tag nobody waits for yet is
// kept aside (copied to this process's memory) until a receive with that tag asks.
//
// A send never waits for the receiver: a message that does not fit in the ring's free
// space right now goes through Gloo (the group's process group) instead, and the ring
// gets a 64-byte *redirect* record in its place, so the receiver, reading records in
// order, knows to take it from Gloo with the same source and tag. (A send that waited
// for space could deadlock two ranks that send to each other before receiving, which
// Gloo's asynchronous sends allow.) For that, a data record leaves a sixteenth of the
// ring free for redirect records: only a ring whose reserve is full of unread redirects
// makes a send wait, bounded by the timeout.
//
// A receive made and not yet waited for still takes its redirected messages: while
// receives are outstanding, a progress thread posts the fallback receive of each
// redirect record every millisecond, as Gloo posts a receive when it is made (its
// sender's wait may come before the receiver's; Note [receives posted early]).
//
// Waiting: a receiver spins for at most 1 ms (not at all with more ranks than CPUs),
// then sleeps on the ring's futex; a sender makes the wake-up call only when the
// receiver sleeps. Every wait is bounded by the group's timeout (TimeoutError naming the
// rank waited for); a peer process that exits is noticed within 50 ms (CommError naming
// its rank and pid).
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace loom::comm {

class ShmP2p {
 public:
  struct Options {
    int rank = 0, size = 0;
    int64_t ring_bytes = 4 << 20;  // per ordered pair of ranks; a multiple of 4096
    std::string group;             // for errors
    std::vector<int> global_ranks;
    std::chrono::milliseconds timeout{0};
    bool spin = true;               // false with more ranks than CPUs
    const int32_t* pids = nullptr;  // each rank's pid, in the segment (liveness)
    int fd = -1;                    // the segment's (the rings are allocated through it)
    size_t region_offset = 0;       // of the region in the segment; a multiple of 4096
  };
  // The groups that get rings (each rank's rings are size - 1 of ring_bytes each).
  static constexpr int kMaxRanks = 8;
  // Bytes of the segment region the rings of `size` ranks need (0: none for this size).
  static size_t region_bytes(int size, int64_t ring_bytes);
  // Allocates the part of the region that every ring needs from the start (the headers
  // and each ring's first page), at `offset` of the segment `fd`. False: it failed.
  static bool allocate_fixed(int fd, size_t offset, int size, int64_t ring_bytes);

  // `region`: region_bytes() of the shared segment, page-aligned, zero-filled when
  // first mapped (a fresh POSIX segment is), mapped by every rank of the group.
  ShmP2p(void* region, Options options);
  ~ShmP2p();
  ShmP2p(const ShmP2p&) = delete;
  ShmP2p& operator=(const ShmP2p&) = delete;

  // One CPU tensor per call (Gloo's rule too). `fallback` carries the messages that do
  // not fit (the group's process group; the receiver takes them from it too).
  c10::intrusive_ptr<c10d::Work> send(const at::Tensor& tensor, int dst, int tag, c10d::ProcessGroup& fallback);
  // The work completes when the message is in `tensor` (same number of bytes as sent).
  c10::intrusive_ptr<c10d::Work> recv(const at::Tensor& tensor, int src, int tag, c10d::ProcessGroup& fallback);
  // From whichever rank's message with `tag` comes first; the work's sourceRank() says.
  c10::intrusive_ptr<c10d::Work> recv_any(const at::Tensor& tensor, int tag, c10d::ProcessGroup& fallback);

  // Messages sent through the rings and through the fallback (redirected) so far.
  int64_t sent_in_rings() const;
  int64_t sent_redirected() const;

  // Tests: the next rings' allocations fail (as with a full /dev/shm) while set.
  static void fail_ring_allocation_for_tests(bool fail);

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace loom::comm
