// Coalesced collectives over many tensors: tensors of one dtype are flattened into one
// contiguous buffer (split into chunks of at most `chunk_bytes`), so a model's
// parameters and buffers move in a handful of collectives instead of one per tensor.
//
// Collective: every member of the group calls with tensors of the same shapes and
// dtypes, in the same order. Tensors are updated in place (autograd is not recorded).
// Blocks until done; bounded by the group's timeout (CommError / TimeoutError).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace loom::comm {
class Group;
}

namespace loom::dp {

constexpr int64_t kDefaultChunkBytes = int64_t{64} << 20;

// tensors[i] <- root's tensors[i].
void broadcast_coalesced(comm::Group& group, const std::vector<at::Tensor>& tensors, int root,
                         int64_t chunk_bytes = kDefaultChunkBytes);

// tensors[i] <- sum over members of (scale_of_that_member * tensors[i]). Each member
// passes its own scale (e.g. its share of the samples, so the result is a weighted mean).
void allreduce_coalesced(comm::Group& group, const std::vector<at::Tensor>& tensors, double scale,
                         int64_t chunk_bytes = kDefaultChunkBytes);

}  // namespace loom::dp
