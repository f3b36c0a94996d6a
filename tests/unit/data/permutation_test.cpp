#include "loom/data/partitioner.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <vector>

#include "loom/core/error.h"

namespace loom::data {
namespace {

bool is_permutation_of_range(std::vector<int64_t> p) {
  std::sort(p.begin(), p.end());
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] != static_cast<int64_t>(i)) return false;
  }
  return true;
}

// Golden values: any change of algorithm changes every run's batch order, which must be
// deliberate. They were computed by the Python transcription in permutation.h, which
// reproduces the published splitmix64 and xoshiro256** reference outputs
// (see rng_test.cpp).
TEST(EpochPermutation, Golden) {
  EXPECT_EQ(epoch_permutation(10, 1, 0), (std::vector<int64_t>{2, 4, 7, 3, 8, 5, 6, 0, 1, 9}));
  EXPECT_EQ(epoch_permutation(10, 1, 1), (std::vector<int64_t>{8, 7, 5, 2, 6, 1, 3, 9, 0, 4}));
  EXPECT_EQ(epoch_permutation(10, 2, 0), (std::vector<int64_t>{3, 0, 9, 4, 1, 5, 7, 2, 8, 6}));
}

TEST(EpochPermutation, IsAPermutation) {
  for (int64_t n : {0, 1, 2, 3, 17, 1000, 60000}) {
    const auto p = epoch_permutation(n, 42, 3);
    ASSERT_EQ(static_cast<int64_t>(p.size()), n);
    EXPECT_TRUE(is_permutation_of_range(p)) << "n=" << n;
  }
}

TEST(EpochPermutation, IsDeterministic) { EXPECT_EQ(epoch_permutation(60000, 7, 5), epoch_permutation(60000, 7, 5)); }

TEST(EpochPermutation, DiffersAcrossEpochsAndSeeds) {
  const auto base = epoch_permutation(1000, 7, 0);
  EXPECT_NE(base, epoch_permutation(1000, 7, 1));
  EXPECT_NE(base, epoch_permutation(1000, 8, 0));
  EXPECT_NE(epoch_permutation(1000, 7, 1), epoch_permutation(1000, 7, 2));
  std::vector<int64_t> identity(1000);
  std::iota(identity.begin(), identity.end(), 0);
  EXPECT_NE(base, identity);
}

// Each of the 6 orders of 3 elements should be about equally likely.
TEST(EpochPermutation, IsUniformOnSmallSets) {
  std::vector<int> counts(9, 0);
  constexpr int kTrials = 60000;
  for (int64_t epoch = 0; epoch < kTrials; ++epoch) {
    const auto p = epoch_permutation(3, 123, epoch);
    ++counts[static_cast<size_t>(p[0] * 3 + p[1])];
  }
  int orders = 0;
  for (int c : counts) {
    if (c == 0) continue;
    ++orders;
    EXPECT_NEAR(c, kTrials / 6, 500);  // ~5 standard deviations
  }
  EXPECT_EQ(orders, 6);
}

TEST(EpochPermutation, RejectsNegativeArguments) {
  EXPECT_THROW(epoch_permutation(-1, 0, 0), Error);
  EXPECT_THROW(epoch_permutation(10, 0, -1), Error);
}

}  // namespace
}  // namespace loom::data
