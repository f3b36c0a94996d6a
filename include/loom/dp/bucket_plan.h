// BucketPlan: which gradients travel together in one flat allreduce, and where.
//
// Parameters are taken in a given order (at construction: reverse registration order,
// the order in which backward usually produces their gradients; after the first step:
// the order they actually arrived) and packed greedily: a parameter joins the current
// bucket while the bucket stays within its cap (a single parameter larger than the cap
// gets a bucket of its own), and a change of dtype starts a new bucket. The first bucket
// has its own, smaller cap (PyTorch's first_bucket_mb) so that the first allreduce
// starts early in backward.
//
// A plain value type; pure function of its inputs, so every rank computes the same plan
// from the same order.
#pragma once

#include <c10/core/ScalarType.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace loom::dp {

struct ParamInfo {
  std::string name;
  int64_t numel = 0;
  at::ScalarType dtype = at::kFloat;
};

struct BucketCaps {
  int64_t first_bucket_bytes = int64_t{1} << 20;
  int64_t bucket_bytes = int64_t{25} << 20;
};

struct Bucket {
  std::vector<size_t> params;    // indices into the parameter list, in buffer order
  std::vector<int64_t> offsets;  // element offset of each parameter in the flat buffer
  int64_t numel = 0;             // elements of gradients (without any trailer)
  at::ScalarType dtype = at::kFloat;
};

struct BucketPlan {
  std::vector<Bucket> buckets;
  std::vector<size_t> order;      // the parameter order the plan was built from
  std::vector<size_t> bucket_of;  // parameter index -> bucket index
  std::vector<size_t> slot_of;    // parameter index -> position within its bucket
};

// `order` must be a permutation of 0..params.size()-1 (else ConfigError).
BucketPlan plan_buckets(const std::vector<ParamInfo>& params, const std::vector<size_t>& order, const BucketCaps& caps);

// n-1, n-2, ..., 0.
std::vector<size_t> reverse_order(size_t n);

// "[7.bias] [7.weight 5.bias] ..." for logs and test messages.
std::string describe(const BucketPlan& plan, const std::vector<ParamInfo>& params);

// Caps in bytes from megabytes (MiB, as PyTorch's bucket_cap_mb); ConfigError unless > 0.
BucketCaps caps_from_mb(double first_bucket_mb, double bucket_cap_mb);

}  // namespace loom::dp
