#include "loom/dp/gradient_shards.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "loom/core/error.h"

namespace loom::dp {

GradientShards::GradientShards(std::vector<int64_t> counts, int rank, int64_t total, const at::TensorOptions& options)
    : counts_(std::move(counts)), options_(options.requires_grad(false)) {
  LOOM_CHECK(rank >= 0 && rank < static_cast<int>(counts_.size()), ConfigError,
             "gradient shards: {} counts for member {} of the group", counts_.size(), rank);
  int64_t at = 0;
  for (int64_t c : counts_) {
    LOOM_CHECK(c >= 0, ConfigError, "gradient shards: a negative count ({})", c);
    starts_.push_back(at);
    at += c;
  }
  LOOM_CHECK(at == total, ConfigError, "gradient shards: the counts sum to {} elements, the parameters have {}", at,
             total);
  begin_ = starts_[rank];
  end_ = begin_ + counts_[rank];
  shard_ = at::zeros({end_ - begin_}, options_);
}

std::vector<int64_t> GradientShards::counts_within(int64_t lo, int64_t hi) const {
  std::vector<int64_t> out(counts_.size());
  for (size_t r = 0; r < counts_.size(); ++r) {
    out[r] = std::max<int64_t>(0, std::min(hi, starts_[r] + counts_[r]) - std::max(lo, starts_[r]));
  }
  return out;
}

void GradientShards::keep(const at::Tensor& bucket, int64_t lo, int64_t hi) {
  const int64_t a = std::max(lo, begin_), b = std::min(hi, end_);
  if (a < b) shard_.narrow(0, a - begin_, b - a).copy_(bucket.narrow(0, a - lo, b - a));
}

void GradientShards::set_buffer_numel(int64_t numel) {
  if (numel != buffer_numel_) {
    allocated_ -= static_cast<int64_t>(free_.size());
    free_.clear();
  }
  buffer_numel_ = numel;
}

at::Tensor GradientShards::take_free() {
  if (free_.empty()) return {};
  at::Tensor buffer = std::move(free_.back());
  free_.pop_back();
  return buffer;
}

at::Tensor GradientShards::allocate() {
  ++allocated_;
  return at::empty({buffer_numel_}, options_);
}

void GradientShards::release(at::Tensor buffer) {
  if (buffer.defined() && buffer.numel() == buffer_numel_) free_.push_back(std::move(buffer));
}

int64_t GradientShards::bytes() const {
  return (shard_.numel() + allocated_ * buffer_numel_) * static_cast<int64_t>(shard_.element_size());
}

}  // namespace loom::dp
