#include "loom/dp/distributed_data_parallel.h"

#include <c10/core/ScalarType.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "loom/core/error.h"

namespace loom::dp {

BucketPlan plan_buckets(const std::vector<ParamInfo>& params, const std::vector<size_t>& order,
                        const BucketCaps& caps) {
  LOOM_CHECK(order.size() == params.size(), ConfigError, "bucket order has {} entries for {} parameters", order.size(),
             params.size());
  BucketPlan plan;
  plan.order = order;
  plan.bucket_of.assign(params.size(), SIZE_MAX);
  plan.slot_of.assign(params.size(), SIZE_MAX);
  int64_t bytes = 0;
  for (size_t index : order) {
    LOOM_CHECK(index < params.size() && plan.bucket_of[index] == SIZE_MAX, ConfigError,
               "bucket order is not a permutation of the {} parameters", params.size());
    const ParamInfo& p = params[index];
    const int64_t p_bytes = p.numel * static_cast<int64_t>(c10::elementSize(p.dtype));
    // Bucket 0 has the smaller first-bucket cap; a parameter never shares a bucket
    // with another dtype.
    const size_t current = plan.buckets.empty() ? 0 : plan.buckets.size() - 1;
    const int64_t cap = current == 0 ? caps.first_bucket_bytes : caps.bucket_bytes;
    const bool fits = !plan.buckets.empty() && plan.buckets.back().dtype == p.dtype && bytes + p_bytes <= cap;
    if (!fits) {
      plan.buckets.emplace_back();
      plan.buckets.back().dtype = p.dtype;
      bytes = 0;
    }
    Bucket& b = plan.buckets.back();
    plan.bucket_of[index] = plan.buckets.size() - 1;
    plan.slot_of[index] = b.params.size();
    b.params.push_back(index);
    b.offsets.push_back(b.numel);
    b.numel += p.numel;
    bytes += p_bytes;
  }
  return plan;
}

std::vector<size_t> reverse_order(size_t n) {
  std::vector<size_t> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = n - 1 - i;
  return out;
}

std::string describe(const BucketPlan& plan, const std::vector<ParamInfo>& params) {
  std::string out;
  for (const Bucket& b : plan.buckets) {
    if (!out.empty()) out += ' ';
    out += '[';
    for (size_t i = 0; i < b.params.size(); ++i) {
      if (i) out += ' ';
      out += params[b.params[i]].name;
    }
    out += ']';
  }
  return out;
}

BucketCaps caps_from_mb(double first_bucket_mb, double bucket_cap_mb) {
  LOOM_CHECK(std::isfinite(bucket_cap_mb) && bucket_cap_mb > 0, ConfigError, "bucket_cap_mb must be positive, got {}",
             bucket_cap_mb);
  LOOM_CHECK(std::isfinite(first_bucket_mb) && first_bucket_mb > 0, ConfigError,
             "first_bucket_mb must be positive, got {}", first_bucket_mb);
  BucketCaps caps;
  caps.bucket_bytes = std::max<int64_t>(1, std::llround(bucket_cap_mb * 1024.0 * 1024.0));
  caps.first_bucket_bytes = std::max<int64_t>(1, std::llround(first_bucket_mb * 1024.0 * 1024.0));
  return caps;
}

}  // namespace loom::dp
