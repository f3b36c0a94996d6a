// plan_shards: slicing (one slice per small tensor, nearly equal slices covering a big
// one exactly), key order, byte balance across servers, determinism, bad arguments, and
// describe().
#include "loom/ps/shard_plan.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "loom/core/error.h"

namespace {

using loom::ps::describe;
using loom::ps::plan_shards;
using loom::ps::ShardPlan;
using loom::ps::Slice;
using loom::ps::TensorSpec;

int64_t slice_bytes_of(const std::vector<TensorSpec>& specs, const Slice& s) {
  return s.numel * specs[s.param].element_bytes;
}

// The invariants every plan must satisfy: keys are indices, each parameter's slices are
// contiguous and cover it exactly, keys_of_param agrees with the slices, server_bytes
// is what the slices say.
void expect_consistent(const std::vector<TensorSpec>& specs, const ShardPlan& plan, int servers) {
  ASSERT_EQ(plan.keys_of_param.size(), specs.size());
  ASSERT_EQ(plan.server_bytes.size(), static_cast<size_t>(servers));
  for (size_t k = 0; k < plan.slices.size(); ++k) EXPECT_EQ(plan.slices[k].key, k);
  uint64_t next_key = 0;
  for (size_t p = 0; p < specs.size(); ++p) {
    int64_t offset = 0;
    for (uint64_t key : plan.keys_of_param[p]) {
      EXPECT_EQ(key, next_key++) << "keys follow registration order, slices in offset order";
      const Slice& s = plan.slices.at(key);
      EXPECT_EQ(s.param, p);
      EXPECT_EQ(s.offset, offset) << specs[p].name << " key " << key;
      offset += s.numel;
    }
    EXPECT_EQ(offset, specs[p].numel()) << specs[p].name << ": slices must cover it exactly";
  }
  EXPECT_EQ(next_key, plan.slices.size());
  std::vector<int64_t> bytes(servers, 0);
  for (const Slice& s : plan.slices) {
    ASSERT_GE(s.server, 0);
    ASSERT_LT(s.server, servers);
    bytes[s.server] += slice_bytes_of(specs, s);
  }
  EXPECT_EQ(bytes, plan.server_bytes);
}

TEST(ShardPlan, SmallTensorsAreOneSliceEachInRegistrationOrder) {
  const std::vector<TensorSpec> specs = {
      {"conv.weight", {8, 1, 3, 3}}, {"conv.bias", {8}}, {"fc.weight", {10, 72}}, {"fc.bias", {10}}};
  const ShardPlan plan = plan_shards(specs, 1, int64_t{4} << 20);
  expect_consistent(specs, plan, 1);
  ASSERT_EQ(plan.slices.size(), 4u);
  for (size_t p = 0; p < specs.size(); ++p) {
    EXPECT_EQ(plan.keys_of_param[p], std::vector<uint64_t>{p});
    const Slice& s = plan.slices[p];
    EXPECT_EQ(s.param, p);
    EXPECT_EQ(s.offset, 0);
    EXPECT_EQ(s.numel, specs[p].numel());
    EXPECT_EQ(s.server, 0);
  }
  EXPECT_EQ(plan.server_bytes[0], (72 + 8 + 720 + 10) * 4);
}

TEST(ShardPlan, TensorExactlyAtSliceSizeIsNotSplit) {
  const std::vector<TensorSpec> specs = {{"w", {25, 4}}};  // 400 bytes
  const ShardPlan plan = plan_shards(specs, 2, 400);
  expect_consistent(specs, plan, 2);
  ASSERT_EQ(plan.slices.size(), 1u);
  EXPECT_EQ(plan.slices[0].numel, 100);
}

TEST(ShardPlan, BigTensorIsSplitIntoNearlyEqualSlicesCoveringIt) {
  // 1003 floats with 400-byte slices (100 floats): 11 slices of 92 or 91 elements.
  const std::vector<TensorSpec> specs = {{"bias", {7}}, {"big", {17, 59}}, {"tail", {3}}};
  const ShardPlan plan = plan_shards(specs, 3, 400);
  expect_consistent(specs, plan, 3);
  ASSERT_EQ(plan.keys_of_param[0], std::vector<uint64_t>{0});
  ASSERT_EQ(plan.keys_of_param[1].size(), 11u);
  EXPECT_EQ(plan.keys_of_param[1].front(), 1u);
  EXPECT_EQ(plan.keys_of_param[1].back(), 11u);
  EXPECT_EQ(plan.keys_of_param[2], std::vector<uint64_t>{12});
  int64_t lo = INT64_MAX, hi = 0, sum = 0;
  for (uint64_t key : plan.keys_of_param[1]) {
    const Slice& s = plan.slices[key];
    EXPECT_LE(s.numel * 4, 400) << "a slice is at most slice_bytes";
    lo = std::min(lo, s.numel);
    hi = std::max(hi, s.numel);
    sum += s.numel;
  }
  EXPECT_EQ(sum, 1003);
  EXPECT_LE(hi - lo, 1) << "nearly equal slices";
  EXPECT_EQ(lo, 91);
  // Spread over every server.
  std::vector<int> used(3, 0);
  for (uint64_t key : plan.keys_of_param[1]) used[plan.slices[key].server] = 1;
  EXPECT_EQ(used, std::vector<int>({1, 1, 1}));
}

TEST(ShardPlan, ElementSizeIsRespected) {
  // f16-sized elements: 10-byte slices hold 5 elements; 11 elements -> 3 slices (4, 4, 3).
  const std::vector<TensorSpec> specs = {{"h", {11}, 2}};
  const ShardPlan plan = plan_shards(specs, 1, 10);
  expect_consistent(specs, plan, 1);
  ASSERT_EQ(plan.slices.size(), 3u);
  EXPECT_EQ(plan.slices[0].numel, 4);
  EXPECT_EQ(plan.slices[1].numel, 4);
  EXPECT_EQ(plan.slices[2].numel, 3);
  EXPECT_EQ(plan.server_bytes[0], 22);
}

TEST(ShardPlan, ZeroElementTensorGetsOneEmptySlice) {
  const std::vector<TensorSpec> specs = {{"a", {3}}, {"empty", {0, 4}}, {"b", {2}}};
  const ShardPlan plan = plan_shards(specs, 2, 8);
  expect_consistent(specs, plan, 2);
  ASSERT_EQ(plan.keys_of_param[1].size(), 1u);
  EXPECT_EQ(plan.slices[plan.keys_of_param[1][0]].numel, 0);
}

std::vector<TensorSpec> uneven_model() {
  // Sizes chosen to make balancing non-trivial: big, medium and tiny tensors mixed.
  return {{"embed", {300, 16}}, {"l1.w", {16, 64}}, {"l1.b", {64}}, {"l2.w", {64, 64}}, {"l2.b", {64}},
          {"l3.w", {64, 10}},   {"l3.b", {10}},     {"scale", {1}}, {"odd", {37, 3}},   {"huge", {9001}}};
}

class ShardPlanBalance : public ::testing::TestWithParam<int> {};

TEST_P(ShardPlanBalance, BytesAreBalancedWithinOneSlice) {
  const int servers = GetParam();
  const auto specs = uneven_model();
  for (int64_t slice_bytes : {int64_t{1} << 12, int64_t{3000}, int64_t{1} << 14, int64_t{4} << 20}) {
    SCOPED_TRACE("slice_bytes " + std::to_string(slice_bytes));
    const ShardPlan plan = plan_shards(specs, servers, slice_bytes);
    expect_consistent(specs, plan, servers);
    int64_t largest = 0, total = 0;
    for (const Slice& s : plan.slices) largest = std::max(largest, slice_bytes_of(specs, s));
    for (const auto& t : specs) total += t.numel() * t.element_bytes;
    const auto [lo, hi] = std::minmax_element(plan.server_bytes.begin(), plan.server_bytes.end());
    EXPECT_LE(*hi - *lo, largest) << loom::ps::describe(plan);
    int64_t sum = 0;
    for (int64_t b : plan.server_bytes) sum += b;
    EXPECT_EQ(sum, total);
  }
  // With small slices the balance is tight: every server gets close to total / servers.
  const ShardPlan fine = plan_shards(specs, servers, 1 << 12);
  const auto [lo, hi] = std::minmax_element(fine.server_bytes.begin(), fine.server_bytes.end());
  EXPECT_LE(*hi - *lo, 1 << 12);
  EXPECT_GT(*lo, 0);
}

INSTANTIATE_TEST_SUITE_P(Servers, ShardPlanBalance, ::testing::Values(2, 3));

TEST(ShardPlan, EqualSlicesGoRoundRobinLowestIndexFirst) {
  const std::vector<TensorSpec> specs = {{"a", {4}}, {"b", {4}}, {"c", {4}}, {"d", {4}}, {"e", {4}}};
  const ShardPlan plan = plan_shards(specs, 2, 1024);
  std::vector<int> servers;
  for (const Slice& s : plan.slices) servers.push_back(s.server);
  EXPECT_EQ(servers, std::vector<int>({0, 1, 0, 1, 0}));
  EXPECT_EQ(plan.server_bytes, std::vector<int64_t>({48, 32}));
}

TEST(ShardPlan, LargestSliceIsPlacedFirst) {
  // Largest first: "big" goes to server 0, then the small ones all fill server 1 before
  // server 0 gets another (greedy in registration order would give 0, 1, 0, 1).
  const std::vector<TensorSpec> specs = {{"s1", {10}}, {"big", {30}}, {"s2", {10}}, {"s3", {10}}};
  const ShardPlan plan = plan_shards(specs, 2, 1024);
  EXPECT_EQ(plan.slices[1].server, 0);
  EXPECT_EQ(plan.slices[0].server, 1);
  EXPECT_EQ(plan.slices[2].server, 1);
  EXPECT_EQ(plan.slices[3].server, 1);
  EXPECT_EQ(plan.server_bytes, std::vector<int64_t>({120, 120}));
}

TEST(ShardPlan, IsDeterministic) {
  const auto specs = uneven_model();
  for (int servers : {1, 2, 3, 5}) {
    const ShardPlan a = plan_shards(specs, servers, 3000);
    const ShardPlan b = plan_shards(specs, servers, 3000);
    ASSERT_EQ(a.slices.size(), b.slices.size());
    for (size_t k = 0; k < a.slices.size(); ++k) {
      EXPECT_EQ(a.slices[k].key, b.slices[k].key);
      EXPECT_EQ(a.slices[k].param, b.slices[k].param);
      EXPECT_EQ(a.slices[k].offset, b.slices[k].offset);
      EXPECT_EQ(a.slices[k].numel, b.slices[k].numel);
      EXPECT_EQ(a.slices[k].server, b.slices[k].server);
    }
    EXPECT_EQ(a.keys_of_param, b.keys_of_param);
    EXPECT_EQ(a.server_bytes, b.server_bytes);
    EXPECT_EQ(describe(a), describe(b));
  }
}

TEST(ShardPlan, MoreServersThanSlicesLeavesSomeEmpty) {
  const std::vector<TensorSpec> specs = {{"a", {4}}};
  const ShardPlan plan = plan_shards(specs, 3, 1024);
  expect_consistent(specs, plan, 3);
  EXPECT_EQ(plan.server_bytes, std::vector<int64_t>({16, 0, 0}));
}

TEST(ShardPlan, RejectsBadArguments) {
  const std::vector<TensorSpec> specs = {{"w", {4, 4}}};
  for (int servers : {0, -1}) {
    try {
      plan_shards(specs, servers, 1024);
      ADD_FAILURE() << "no error for " << servers << " servers";
    } catch (const loom::ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("--servers"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(std::to_string(servers)), std::string::npos) << e.what();
    }
  }
  for (int64_t slice_bytes : {int64_t{3}, int64_t{0}, int64_t{-8}}) {
    try {
      plan_shards(specs, 1, slice_bytes);
      ADD_FAILURE() << "no error for slice_bytes " << slice_bytes;
    } catch (const loom::ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("'w'"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(std::to_string(slice_bytes)), std::string::npos) << e.what();
    }
  }
  // One element exactly is enough.
  const ShardPlan plan = plan_shards(specs, 1, 4);
  EXPECT_EQ(plan.slices.size(), 16u);
}

TEST(ShardPlan, DescribeNamesServersBytesAndSlices) {
  // 2 MiB + 1 MiB + 1 MiB of floats on 2 servers: 2 MiB alone on server 0, the two
  // 1 MiB tensors on server 1.
  const std::vector<TensorSpec> specs = {{"a", {1 << 18}}, {"b", {1 << 19}}, {"c", {1 << 18}}};
  const ShardPlan plan = plan_shards(specs, 2, int64_t{4} << 20);
  EXPECT_EQ(describe(plan), "2 servers, 3 slices: server 0 2.00 MiB (1 slice), server 1 2.00 MiB (2 slices)");
  const ShardPlan one = plan_shards({{"x", {1 << 17}}}, 1, int64_t{4} << 20);
  EXPECT_EQ(describe(one), "1 server, 1 slice: server 0 0.50 MiB (1 slice)");
}

}  // namespace
