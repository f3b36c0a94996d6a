// Private to comm/: the argument check of Group::reduce_scatter / all_gather, shared by
// Group (before choosing shared memory or the ring) and RingCollectives (which can also
// be called directly), so both report a bad buffer or bad counts in the same words.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace loom::comm {

// Throws CommError, naming `op` and `group`, unless `buffer` is a dense contiguous CPU
// float32 or float64 tensor, `counts` has one non-negative count per member (`size`)
// and the counts add up to the buffer's number of elements.
void check_sharded_args(const char* op, const std::string& group, int size, const at::Tensor& buffer,
                        const std::vector<int64_t>& counts);

}  // namespace loom::comm
