// Communication hooks and gradient compression: how DistributedDataParallel reduces one
// bucket of gradients across its group, the C++ counterpart of PyTorch's
// register_comm_hook (Python-only there). The built-in hooks below, the plain allreduce
// (the default) and the 16-bit compressions that DdpOptions::compression selects, are
// written on this same API. Register your own with DistributedDataParallel::register_comm_hook.
//
//   ddp.register_comm_hook([](loom::comm::Group& group, const loom::dp::GradBucket& bucket) {
//     std::vector<at::Tensor> io{bucket.buffer};
//     return group.allreduce(io);   // what hooks::allreduce() does
//   });
//
// Contract of a hook, hook(group, bucket) -> Work:
// - On entry, bucket.buffer holds this rank's gradients of the bucket's parameters,
//   already multiplied by this rank's weight (DistributedDataParallel::set_weight, its
//   share of the global batch; zeros for a rank with weight 0), so that the element-wise
//   sum of the buffers over the group is the global-batch gradient.
// - When the returned Work's wait() has returned, bucket.buffer must hold that
//   element-wise sum over the group, in place, in every element: the last bucket ends
//   with one bookkeeping element per parameter (after the gradients), which DDP uses to
//   find parameters without a gradient and which must be summed like the rest. Scale,
//   compress or reorder as you like on the way, as long as the sum comes out.
// - It is called once per bucket per synchronised step, in bucket order (0, 1, ...) and
//   in the same order on every rank, so it must issue the same collectives on every rank.
// - It is called on the thread that runs backward (autograd's, inside loss.backward()),
//   or inside finish() on the training thread for buckets completed there (parameters
//   without a gradient, a rank with weight 0), while DDP holds its lock: it must not call
//   back into the DistributedDataParallel object.
// - It must not block: start the collective and return its Work; do not wait() on it.
//   Work::then() adds a step that runs after the collective, inside finish()'s wait.
//   finish() waits for every bucket's Work and rethrows the first error (on this rank).
//   A hook that throws makes finish() throw that error once the buckets it launched are
//   done; if it threw on some ranks only, the others fail by the group's timeout.
// - bucket.buffer is param.grad's storage: the hook must not resize or replace it, and
//   must not keep it past its Work (DDP rebuilds its buckets once, after the first step).
//   Tensors the collective reads or writes must stay alive until it completes (Group's
//   collectives keep the tensors they are given; keep any other in the Work::then step).
//
// Thread-safety: the built-in hooks hold no state; a user hook's state is its own.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "loom/comm/work.h"

namespace loom::comm {
class Group;
}

namespace loom::dp {

// One bucket, as a hook sees it. Its tensors are DDP's own: see the contract above.
struct GradBucket {
  size_t index = 0;                    // 0 .. number of buckets - 1, the launch order
  at::Tensor buffer;                   // flat, contiguous, in the parameters' dtype
  std::vector<at::Tensor> parameters;  // in buffer order; parameter i's gradient is
  std::vector<int64_t> offsets;        // buffer[offsets[i], offsets[i] + parameters[i].numel())
};

using CommHook = std::function<comm::Work(comm::Group& group, const GradBucket& bucket)>;

namespace hooks {

// The default: a sum-allreduce of the buffer over the group (through shared memory when
// the group uses it for float buffers, comm::Group::allreduce, else through Gloo).
CommHook allreduce();
// Casts the buffer to fp16, sum-allreduces that (Gloo sums kHalf natively) and casts the
// result back into the buffer: half the bytes on the wire, fp16 rounding of each rank's
// gradient and of the sum. A buffer already in fp16 is reduced as it is.
CommHook fp16_compress();
// bf16 is not available: Gloo's allreduce in libtorch 1.13 rejects kBFloat16 ("Invalid
// scalar type"), so this throws ConfigError when called, up front, rather than failing
// every rank in the middle of the first backward.
CommHook bf16_compress();

}  // namespace hooks

// DdpOptions::compression and the CLI's --grad-compression: which built-in hook.
enum class Compression { none, fp16, bf16 };

const char* to_string(Compression compression);
// "none" | "fp16" | "bf16"; anything else is a ConfigError.
Compression parse_compression(const std::string& name);
// hooks::allreduce(), hooks::fp16_compress() or hooks::bf16_compress() (a ConfigError).
CommHook hook_for(Compression compression);

}  // namespace loom::dp
