#include "loom/dp/distributed_data_parallel.h"

#include <gtest/gtest.h>

#include "loom/core/error.h"

namespace {

using loom::dp::BucketCaps;
using loom::dp::ParamInfo;
using loom::dp::plan_buckets;
using loom::dp::reverse_order;

// deep-mlp (in 4, width 8, depth 4, 3 classes) in registration order.
std::vector<ParamInfo> deep_mlp_params() {
  return {{"1.weight", 32}, {"1.bias", 8}, {"3.weight", 64}, {"3.bias", 8},
          {"5.weight", 64}, {"5.bias", 8}, {"7.weight", 24}, {"7.bias", 3}};
}

TEST(BucketPlan, ReverseOrderWithSmallerFirstBucket) {
  const auto params = deep_mlp_params();
  const auto plan = plan_buckets(params, reverse_order(params.size()), BucketCaps{64, 256});
  EXPECT_EQ(describe(plan, params), "[7.bias] [7.weight 5.bias] [5.weight] [3.bias] [3.weight] [1.bias 1.weight]");
  ASSERT_EQ(plan.buckets.size(), 6u);
  EXPECT_EQ(plan.buckets[1].offsets, (std::vector<int64_t>{0, 24}));
  EXPECT_EQ(plan.buckets[1].numel, 32);
  EXPECT_EQ(plan.buckets[5].offsets, (std::vector<int64_t>{0, 8}));
  EXPECT_EQ(plan.bucket_of[6], 1u);  // 7.weight
  EXPECT_EQ(plan.slot_of[5], 1u);    // 5.bias is second in its bucket
}

TEST(BucketPlan, LargeCapsGiveOneBucket) {
  const auto params = deep_mlp_params();
  const auto plan = plan_buckets(params, reverse_order(params.size()), BucketCaps{});
  ASSERT_EQ(plan.buckets.size(), 1u);
  EXPECT_EQ(plan.buckets[0].numel, 211);
  EXPECT_EQ(plan.buckets[0].params.front(), 7u);
}

TEST(BucketPlan, OversizedParameterGetsItsOwnBucketAndDtypeSplits) {
  std::vector<ParamInfo> params{{"a", 1000}, {"b", 2}, {"c", 2, at::kDouble}, {"d", 2, at::kDouble}};
  const auto plan = plan_buckets(params, {0, 1, 2, 3}, BucketCaps{16, 64});
  EXPECT_EQ(describe(plan, params), "[a] [b] [c d]");
  EXPECT_EQ(plan.buckets[2].dtype, at::kDouble);
}

TEST(BucketPlan, OrderMustBeAPermutation) {
  const auto params = deep_mlp_params();
  EXPECT_THROW(plan_buckets(params, {0, 1, 2}, BucketCaps{}), loom::ConfigError);
  EXPECT_THROW(plan_buckets(params, {0, 1, 2, 3, 4, 5, 6, 6}, BucketCaps{}), loom::ConfigError);
}

TEST(BucketPlan, CapsFromMegabytes) {
  const auto caps = loom::dp::caps_from_mb(1, 25);
  EXPECT_EQ(caps.first_bucket_bytes, 1 << 20);
  EXPECT_EQ(caps.bucket_bytes, 25 << 20);
  EXPECT_THROW(loom::dp::caps_from_mb(1, 0), loom::ConfigError);
}

}  // namespace
