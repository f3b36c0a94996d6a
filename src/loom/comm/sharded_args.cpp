#include "loom/comm/sharded_args.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "loom/core/error.h"

namespace loom::comm {

void check_sharded_args(const char* op, const std::string& group, int size, const at::Tensor& buffer,
                        const std::vector<int64_t>& counts) {
  LOOM_CHECK(buffer.defined() && buffer.device().is_cpu() && buffer.layout() == at::kStrided &&
                 buffer.is_contiguous() && (buffer.scalar_type() == at::kFloat || buffer.scalar_type() == at::kDouble),
             CommError, "{} on group '{}': the buffer must be a dense contiguous CPU float32 or float64 tensor", op,
             group);
  LOOM_CHECK(static_cast<int>(counts.size()) == size, CommError,
             "{} on group '{}': {} counts for a group of {} members", op, group, counts.size(), size);
  int64_t total = 0;
  for (size_t r = 0; r < counts.size(); ++r) {
    LOOM_CHECK(counts[r] >= 0, CommError, "{} on group '{}': member {}'s count is negative ({})", op, group, r,
               counts[r]);
    total += counts[r];
  }
  LOOM_CHECK(buffer.numel() == total, CommError,
             "{} on group '{}': the buffer holds {} elements, but the counts add up to {}", op, group, buffer.numel(),
             total);
}

}  // namespace loom::comm
