// P2p: one pipeline stage's traffic with its neighbours over a comm::Group whose rank s
// is stage s: activations go forward to s+1, gradients backward to s-1, asynchronously,
// tagged by micro-batch (activation m: tag 2m, its gradient: 2m+1).
//
// Shapes are agreed once: before the first activation it ever sends, a stage sends a
// small header with the per-sample shape and dtype; every later activation must keep
// that per-sample shape (only the batch dimension, the micro-batch size, may differ).
// A gradient has its activation's shape and needs no header.
//
// Buffers are reused: a receive takes a buffer from a pool when it is posted and the
// caller gives it back with release_*() when it is done with the tensor (an activation
// after that micro-batch's backward). The pool only grows when every buffer is in use,
// so it settles at the schedule's peak after the first step. A send keeps its tensor
// alive until finish_sends().
//
// Every wait is bounded by the group's timeout; a dead or silent neighbour raises
// CommError / TimeoutError naming its rank and the operation. Waits that block are
// traced as "idle" on lane 0; on lane 1, a send is traced while it is handed to Gloo,
// and a receive from posting until its completion is seen (Gloo's point-to-point work
// reports completion only to wait(), so at the latest when the stage consumes it).
// Not thread-safe: one stage, one thread.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "loom/comm/work.h"

namespace loom::comm {
class Group;
}
namespace loom::trace {
class Tracer;
}

namespace loom::pipeline {

class P2p {
 public:
  P2p(comm::Group& group, trace::Tracer* tracer);
  ~P2p();
  P2p(const P2p&) = delete;
  P2p& operator=(const P2p&) = delete;

  int stage() const;
  int stages() const;

  // To the next stage / the previous stage; the tensor is kept alive until finish_sends().
  void send_activation(int micro, const at::Tensor& activation);
  void send_gradient(int micro, const at::Tensor& gradient);

  // Posts the receive of micro-batch `micro` (of `rows` samples) now, if its shape is
  // known; otherwise the matching wait posts it. Posting twice is a no-op.
  void post_activation_recv(int micro, int64_t rows);
  void post_gradient_recv(int micro, int64_t rows);
  // The received tensor, [rows, per-sample shape...], a view of a pooled buffer.
  at::Tensor wait_activation(int micro, int64_t rows);
  at::Tensor wait_gradient(int micro, int64_t rows);
  void release_activation(int micro);
  void release_gradient(int micro);

  // Waits for every send issued so far; call once per step.
  void finish_sends();
  // Stamps the completion time of receives seen to be finished (for the trace).
  void poll();
  // Bytes held by the receive pools.
  int64_t pooled_bytes() const;

 private:
  struct Pending {
    comm::Work work;
    at::Tensor buffer;  // the whole pooled buffer
    at::Tensor view;    // [rows, ...]
    int64_t posted_us = 0;
    bool traced = false;
    std::string label;
  };
  struct Pool {
    std::vector<int64_t> sample_shape;  // empty until agreed
    int dtype = -1;                     // c10::ScalarType
    bool known = false;
    std::vector<at::Tensor> free;
    std::map<int, Pending> posted;  // by micro-batch
    std::map<int, at::Tensor> in_use;
    int64_t bytes = 0;
  };
  void post(Pool& pool, int peer, int tag, int micro, int64_t rows, const char* what);
  at::Tensor wait(Pool& pool, int peer, int tag, int micro, int64_t rows, const char* what);
  void release(Pool& pool, int micro);
  void receive_header(Pool& pool, int peer);
  void send_header(const at::Tensor& activation);
  void trace_done(Pending& p);
  void send(const at::Tensor& t, int peer, int tag, const std::string& label);

  comm::Group& group_;
  trace::Tracer* tracer_;
  Pool activations_, gradients_;
  std::vector<int64_t> sent_sample_shape_;  // agreed per-sample shape of what this stage sends
  bool header_sent_ = false;
  std::vector<Pending> sends_;
};

}  // namespace loom::pipeline
