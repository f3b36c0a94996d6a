// Group: a communicator over a fixed set of ranks — collectives and tagged point-to-point
// over c10d (Gloo over TCP here; NCCL/MPI where libtorch has them). This is the only
// place, with Context, that names c10d types, so a port to libtorch 2.x touches comm/.
//
// Ranks passed to and returned by a Group are ranks *within the group* (0..size()-1);
// global_rank() maps them back to the job's ranks.
// Thread-safety: operations may be issued from several threads; c10d runs them in the
// order each thread issues them. All members must issue collectives in the same order.
// Every operation is bounded by the group's timeout (Context options).
#pragma once

#include <ATen/core/Tensor.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "loom/comm/work.h"

namespace c10d {
class ProcessGroup;
}

namespace loom::comm {

enum class ReduceOp { sum, max, min, product };

class Group {
 public:
  struct Impl;
  Group(std::shared_ptr<Impl> impl);
  ~Group();
  Group(const Group&) = delete;
  Group& operator=(const Group&) = delete;

  const std::string& name() const;
  int rank() const;  // this process's rank in the group
  int size() const;
  int global_rank(int group_rank) const;
  const std::vector<int>& global_ranks() const;
  std::chrono::milliseconds timeout() const;

  // Whether sum-allreduces of float tensors go through shared memory (every member on
  // this machine, and ContextOptions::shared_memory: comm/shm_collectives.h) or through c10d.
  bool uses_shared_memory() const;
  // How many allreduces this group has issued through each transport so far (a size-1
  // group issues none): what tests and logs use to say which one actually carried them.
  struct AllreduceCounts {
    int64_t shared_memory = 0;
    int64_t c10d = 0;
  };
  AllreduceCounts allreduce_counts() const;

  // Point-to-point messages this rank has sent through the shared-memory rings (a
  // group whose members all run on this machine, of at most 8 ranks, with shared memory
  // on), and the ones that did not fit in the ring then and went through c10d instead.
  struct MessageCounts {
    int64_t shared_memory = 0;
    int64_t redirected = 0;
  };
  MessageCounts message_counts() const;
  // Bytes of shared memory (/dev/shm) the group's segment holds now, counted once for
  // all its members; 0 without one. Its point-to-point rings take memory only once
  // used: a pair's ring when its first message is sent.
  int64_t shared_memory_bytes() const;

  // In-place collectives over the listed tensors (all members pass tensors of the same
  // shapes and dtypes, in the same order).
  Work allreduce(std::vector<at::Tensor>& tensors, ReduceOp op = ReduceOp::sum);
  Work broadcast(std::vector<at::Tensor>& tensors, int root);
  // output[i] receives member i's `input`.
  Work allgather(std::vector<at::Tensor>& output, const at::Tensor& input);
  Work barrier();

  // Sharded collectives over one flat buffer, in place, with one element count per
  // member (uneven allowed; counts[r] >= 0). Every member passes a dense contiguous CPU
  // float32 or float64 `buffer` of sum(counts) elements and the same counts; member r's
  // range is [offset(r), offset(r) + counts[r]) with offset(r) = counts[0] + ... +
  // counts[r-1]. The buffer must stay alive and untouched until the work completes.
  //   reduce_scatter: afterwards this member's range holds the sum over all members of
  //     their buffers' values in that range: on shared memory bitwise what allreduce()
  //     gives there (both add in rank order); over the ring, added in ring order (equal
  //     within rounding). The rest of the buffer is scratch (unspecified).
  //   all_gather: afterwards every member's buffer holds, in each range r, member r's
  //     values of that range (bitwise copies).
  // Same machine (uses_shared_memory()): through the shared-memory segment. Otherwise a
  // ring over tagged send/recv: each member sends and receives the other members' ranges
  // once, (N-1)/N of the buffer for equal counts, as a ring allreduce's first or second
  // half does. Both are queued on the group's collective thread and run in issue order.
  Work reduce_scatter(const at::Tensor& buffer, const std::vector<int64_t>& counts);
  Work all_gather(const at::Tensor& buffer, const std::vector<int64_t>& counts);

  // One-number collectives, blocking (bounded by the timeout): the sum of every
  // member's `value`; every member's `value`, by group rank; the root's `value`; the
  // root's `values` (every member passes as many).
  double allreduce_sum(double value);
  std::vector<double> allgather_values(double value);
  double broadcast_value(double value, int root);
  std::vector<double> broadcast_values(const std::vector<double>& values, int root);

  // Tagged point-to-point, one tensor per message. Tags separate concurrent streams
  // between the same pair. Through shared memory when every member runs on this machine
  // (message_counts()), else through c10d; sends are asynchronous either way.
  Work send(std::vector<at::Tensor>& tensors, int dst, int tag);
  Work recv(std::vector<at::Tensor>& tensors, int src, int tag);
  Work recv_any(std::vector<at::Tensor>& tensors, int tag);

  // The underlying c10d group, for code inside comm/ only.
  c10d::ProcessGroup& backend();

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace loom::comm
