#include "loom/data/rng.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "loom/core/error.h"

namespace loom::data {
namespace {

TEST(Rng, Splitmix64MatchesTheReference) {
  // The published splitmix64 sequence for seed 1234567.
  uint64_t state = 1234567;
  const std::vector<uint64_t> expected = {6457827717110365317ULL, 3203168211198807973ULL, 9817491932198370423ULL,
                                          4593380528125082431ULL, 16408922859458223821ULL};
  for (uint64_t e : expected) EXPECT_EQ(splitmix64(state), e);
  EXPECT_EQ(mix64(0), 0u);
}

TEST(Rng, Golden) {
  // From the Python transcription in permutation.h, whose xoshiro256** step reproduces the
  // reference outputs for the state {1, 2, 3, 4}: 11520, 0, 1509978240, ...
  Rng rng(0);
  EXPECT_EQ(rng.next(), 11091344671253066420ULL);
  EXPECT_EQ(rng.next(), 13793997310169335082ULL);
  EXPECT_EQ(rng.next(), 1900383378846508768ULL);
  EXPECT_EQ(rng.next(), 7684712102626143532ULL);
  Rng bounded(1);
  for (uint64_t e : {986, 124, 7, 936, 977}) EXPECT_EQ(bounded.below(1000), e);
}

TEST(Rng, StreamsAndSeedsDiffer) {
  EXPECT_NE(Rng(5, 0).next(), Rng(5, 1).next());
  EXPECT_NE(Rng(5, 0).next(), Rng(6, 0).next());
  EXPECT_EQ(Rng(5, 3).next(), Rng(5, 3).next());
}

TEST(Rng, CopiesContinueTheSameSequence) {
  Rng a(9);
  a.next();
  Rng b = a;
  for (int i = 0; i < 10; ++i) EXPECT_EQ(a.next(), b.next());
}

TEST(Rng, BelowStaysInRange) {
  Rng rng(3);
  for (uint64_t bound : {1ULL, 2ULL, 3ULL, 1000ULL, (1ULL << 63) + 1, ~0ULL}) {
    for (int i = 0; i < 1000; ++i) EXPECT_LT(rng.below(bound), bound);
  }
  EXPECT_THROW(rng.below(0), Error);
}

TEST(Rng, UniformAndNormalMoments) {
  Rng rng(11);
  double sum = 0;
  for (int i = 0; i < 100000; ++i) {
    const double u = rng.uniform();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
  }
  EXPECT_NEAR(sum / 100000, 0.5, 0.01);

  std::vector<float> z(100001);  // odd on purpose
  rng.fill_normal(z.data(), static_cast<int64_t>(z.size()), 2.0f, 3.0f);
  double mean = 0, sq = 0;
  for (float v : z) {
    ASSERT_TRUE(std::isfinite(v));
    mean += v;
  }
  mean /= z.size();
  for (float v : z) sq += (v - mean) * (v - mean);
  EXPECT_NEAR(mean, 2.0, 0.05);
  EXPECT_NEAR(std::sqrt(sq / z.size()), 3.0, 0.05);
}

}  // namespace
}  // namespace loom::data
