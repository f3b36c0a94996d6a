// Private to comm/: reduce-scatter and all-gather over one flat buffer with uneven
// counts, as a ring over c10d's tagged send/recv, for groups whose members are not all
// on one machine (Group::reduce_scatter / all_gather; same-machine groups use the
// shared-memory segment, shm_collectives.h). libtorch 1.13's ProcessGroupGloo has no
// reduce-scatter, and its allgather needs equal sizes.
//
// Reduce-scatter, N members, member r owning range r: in step s = 0..N-2, member r sends
// its running sum of range (r - 1 - s) mod N to member r+1 and receives range
// (r - 2 - s) mod N from member r-1, adding it into its buffer; after N-1 steps range r
// holds the sum on member r. All-gather: step s sends range (r - s) mod N onward and
// receives range (r - 1 - s) mod N into place. Each member sends and receives every range
// but one once: (N-1)/N of the buffer for equal counts, the bytes of a ring allreduce's
// first (reduce-scatter) or second (all-gather) half. Ranges are sent in pieces of at
// most Options::piece_bytes, all of a step's pieces in flight at once, so adding piece k
// overlaps receiving piece k+1. Empty ranges send nothing.
//
// Operations run in issue order on one thread per group (asynchronous like Gloo's), with
// a scratch buffer kept across operations (no allocation per call once it is large
// enough). Every wait is bounded by the group's timeout; a failure fails that operation
// and every later one, naming the group and the peer.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace loom::comm {

class RingCollectives {
 public:
  struct Options {
    // The tag of every send/recv of these collectives: one reserved value, different
    // from any tag loom's other users of the group use (the pipeline, the parameter
    // server use small tags). Operations are serialised, so one tag suffices.
    int tag = 0x4c52494e;  // "LRIN"
    int64_t piece_bytes = 1 << 20;
  };
  // `pg` must outlive this object. `global_ranks` name the members in errors.
  RingCollectives(c10::intrusive_ptr<c10d::ProcessGroup> pg, std::string group_name, std::vector<int> global_ranks,
                  std::chrono::milliseconds timeout, Options options);
  ~RingCollectives();  // fails queued operations ("the group was destroyed") and joins
  RingCollectives(const RingCollectives&) = delete;
  RingCollectives& operator=(const RingCollectives&) = delete;

  // See Group::reduce_scatter / Group::all_gather. `buffer`: dense contiguous CPU
  // float32 or float64 with sum(counts) elements; counts.size() == the group's size.
  // Invalid arguments throw CommError at once (before anything is queued), in
  // Group's words (check_sharded_args, sharded_args.h).
  c10::intrusive_ptr<c10d::Work> reduce_scatter(at::Tensor buffer, std::vector<int64_t> counts);
  c10::intrusive_ptr<c10d::Work> all_gather(at::Tensor buffer, std::vector<int64_t> counts);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace loom::comm
