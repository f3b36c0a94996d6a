#include "loom/pipeline/stage_split.h"

#include <gtest/gtest.h>

#include <functional>
#include <numeric>
#include <random>

#include "loom/core/error.h"

namespace loom::pipeline {
namespace {

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

TEST(StageSplit, ParsesAnExplicitSplit) {
  EXPECT_EQ(parse_split("4,3,2", 9, 3), (std::vector<int64_t>{4, 3, 2}));
  EXPECT_EQ(parse_split("9", 9, 1), (std::vector<int64_t>{9}));
}

TEST(StageSplit, RejectsSplitsThatDoNotFitTheModel) {
  EXPECT_TRUE(contains(error_of([] { parse_split("4,3,3", 9, 3); }), "covers 10 layers but the model has 9"));
  EXPECT_TRUE(contains(error_of([] { parse_split("4,5", 9, 3); }), "has 2 stage(s) but the pipeline has 3"));
  EXPECT_TRUE(contains(error_of([] { parse_split("4,0,5", 9, 3); }), "at least one layer"));
  EXPECT_TRUE(contains(error_of([] { parse_split("4,x,4", 9, 3); }), "'x' is not a layer count"));
  EXPECT_TRUE(contains(error_of([] { parse_split("4,,5", 9, 3); }), "is not a layer count"));
  EXPECT_TRUE(contains(error_of([] { parse_split("4,5,", 9, 2); }), "--split"));
  EXPECT_TRUE(contains(error_of([] { parse_split("", 9, 1); }), "--split"));
  EXPECT_TRUE(contains(error_of([] { parse_split("-1,10", 9, 2); }), "at least one layer"));
}

TEST(StageSplit, UniformGivesEarlierStagesTheExtraLayers) {
  EXPECT_EQ(uniform_split(9, 3), (std::vector<int64_t>{3, 3, 3}));
  EXPECT_EQ(uniform_split(8, 3), (std::vector<int64_t>{3, 3, 2}));
  EXPECT_EQ(uniform_split(3, 3), (std::vector<int64_t>{1, 1, 1}));
  EXPECT_TRUE(contains(error_of([] { uniform_split(2, 3); }), "fewer than the 3 pipeline stages"));
  EXPECT_TRUE(contains(error_of([] { uniform_split(2, 0); }), "at least one stage"));
}

TEST(StageSplit, BalancedMinimisesTheLargestStage) {
  // One heavy layer alone; the rest shared.
  EXPECT_EQ(balanced_split({1, 1, 10, 1, 1, 1}, 2), (std::vector<int64_t>{3, 3}));
  EXPECT_EQ(balanced_split({10, 1, 1, 1, 1, 1, 1}, 2), (std::vector<int64_t>{1, 6}));
  EXPECT_EQ(balanced_split({1, 2, 3, 4, 5, 6}, 3), (std::vector<int64_t>{3, 2, 1}));
  // Brute force over every split of 7 layers into 3 stages for random costs.
  std::mt19937 rng(5);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<double> costs(7);
    for (auto& c : costs) c = rng() % 10;
    double best = 1e18;
    for (int a = 1; a < 6; ++a) {
      for (int b = a + 1; b < 7; ++b) {
        const auto sc = stage_costs(costs, {a, b - a, 7 - b});
        best = std::min(best, *std::max_element(sc.begin(), sc.end()));
      }
    }
    const auto split = balanced_split(costs, 3);
    const auto sc = stage_costs(costs, split);
    EXPECT_DOUBLE_EQ(*std::max_element(sc.begin(), sc.end()), best);
    EXPECT_EQ(std::accumulate(split.begin(), split.end(), int64_t{0}), 7);
    for (auto n : split) EXPECT_GE(n, 1);
  }
}

TEST(StageSplit, ZeroCostLayersDoNotPileUp) {
  // mlp's params: flatten, linear, relu, linear, relu, linear. Any cut after the first
  // linear is as good; the one nearest equal layer counts wins.
  EXPECT_EQ(balanced_split({0, 200960, 0, 32896, 0, 1290}, 2), (std::vector<int64_t>{3, 3}));
  EXPECT_EQ(balanced_split({0, 0, 0, 0}, 2), (std::vector<int64_t>{2, 2}));
}

TEST(StageSplit, IsDeterministicAndRejectsBadCosts) {
  const std::vector<double> costs{3, 1, 4, 1, 5, 9, 2, 6};
  EXPECT_EQ(balanced_split(costs, 3), balanced_split(costs, 3));
  EXPECT_THROW(balanced_split({1, -1}, 2), ConfigError);
  EXPECT_THROW(balanced_split({1}, 2), ConfigError);
}

TEST(StageSplit, DescribesTheRangesAndCosts) {
  EXPECT_EQ(describe_split({4, 3, 2}), "split 4,3,2 = layers 0-3 | 4-6 | 7-8");
  EXPECT_EQ(describe_split({1, 1}, {2, 3}, " ms"), "split 1,1 = layers 0-0 (2 ms) | 1-1 (3 ms)");
  EXPECT_EQ(stage_offsets({4, 3, 2}), (std::vector<int64_t>{0, 4, 7, 9}));
}

TEST(StageSplit, ParsesBalanceNames) {
  EXPECT_EQ(parse_balance("time"), Balance::time);
  EXPECT_TRUE(contains(error_of([] { parse_balance("flops"); }),
                       "--balance: unknown value 'flops' (expected one of: uniform, params, time)"));
}

}  // namespace
}  // namespace loom::pipeline
