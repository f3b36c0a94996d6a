// GradientShards: the Reducer's bookkeeping for ZeRO stage 2 (DistributedDataParallel::
// shard_gradients). The flat gradient space is the trainable parameters' gradients in
// registration order, end to end; member r of the group owns the contiguous range
// [starts[r], starts[r] + counts[r]) of it. Each bucket holds one contiguous range
// [lo, hi) of that space, so one reduce-scatter of the bucket with counts_within(lo, hi)
// leaves each member's owned part of it summed in place, and keep() moves this member's
// part into the shard, the only gradient memory that lives from one step to the next.
//
// Buckets do not own their buffers: they borrow one from a pool while they fill and
// communicate, and give it back once kept, so a step holds a few bucket buffers at a
// time instead of a whole model's gradients. Buffers are allocated once (pool growth
// only) and reused: fresh memory costs a page fault per 4 KiB here.
//
// A plain helper of one Reducer: not thread-safe (the Reducer's mutex guards it).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace loom::dp {

class GradientShards {
 public:
  // `counts`: elements of the flat space per member (each >= 0); `rank`: this member.
  // ConfigError unless counts has a member for `rank` and sums to `total`.
  GradientShards(std::vector<int64_t> counts, int rank, int64_t total, const at::TensorOptions& options);

  int64_t begin() const { return begin_; }
  int64_t end() const { return end_; }
  const std::vector<int64_t>& counts() const { return counts_; }
  // This member's reduced gradients, [begin, end) of the flat space; rewritten in full
  // by keep() over one step's buckets.
  const at::Tensor& shard() const { return shard_; }

  // Per member, how many elements of [lo, hi) it owns: the reduce-scatter counts of a
  // bucket holding [lo, hi) (they sum to hi - lo, in member order).
  std::vector<int64_t> counts_within(int64_t lo, int64_t hi) const;
  // Copies this member's part of `bucket`, which holds the summed range [lo, hi) (at
  // least in this member's part), into the shard.
  void keep(const at::Tensor& bucket, int64_t lo, int64_t hi);

  // Buffer pool. Every buffer has `numel` elements (the largest bucket's): set it before
  // the first acquire; changing it drops the free buffers.
  void set_buffer_numel(int64_t numel);
  // A free buffer, or an undefined tensor when none is free (then keep a bucket in flight
  // and release its buffer, or allocate()).
  at::Tensor take_free();
  at::Tensor allocate();
  void release(at::Tensor buffer);
  int64_t buffers() const { return allocated_; }  // buffers allocated so far
  // Bytes of the shard and of every pool buffer allocated so far.
  int64_t bytes() const;

 private:
  std::vector<int64_t> counts_;
  std::vector<int64_t> starts_;  // starts_[r]: member r's first element
  int64_t begin_ = 0, end_ = 0;
  at::Tensor shard_;
  at::TensorOptions options_;
  int64_t buffer_numel_ = 0;
  int64_t allocated_ = 0;  // buffers made
  std::vector<at::Tensor> free_;
};

}  // namespace loom::dp
