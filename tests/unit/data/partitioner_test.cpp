// Property tests of the three partition schemes over many (N, B, W, weights, epoch, seed).
#include "loom/data/partitioner.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>

#include "loom/core/error.h"
#include "loom/data/apportion.h"

namespace {

using namespace loom::data;

PartitionOptions opts(const std::string& scheme, int w, int64_t n, int64_t b, uint64_t seed = 0,
                      std::vector<double> weights = {}) {
  PartitionOptions o;
  o.scheme = parse_scheme(scheme);
  o.world_size = w;
  o.num_samples = n;
  o.batch_size = b;
  o.seed = seed;
  o.weights = std::move(weights);
  return o;
}

// All samples of one epoch: per rank, per step.
std::vector<std::vector<std::vector<int64_t>>> epoch_of(Partitioner& p, int64_t epoch) {
  std::vector<std::vector<std::vector<int64_t>>> out(p.options().world_size);
  for (int r = 0; r < p.options().world_size; ++r) {
    for (int64_t t = 0; t < p.steps_per_epoch(); ++t) out[r].push_back(p.indices(r, epoch, t));
  }
  return out;
}

TEST(Apportion, SumsExactlyAndStaysWithinOneOfIdeal) {
  for (int64_t total : {0, 1, 7, 64, 100, 1001}) {
    for (const auto& w : std::vector<std::vector<double>>{
             {1}, {1, 1}, {3, 1, 1}, {2, 1, 1}, {0.1, 0.2, 0.7}, {5, 0, 5}, {1, 1, 1, 1, 1, 1, 1}}) {
      const auto parts = apportion(total, w);
      ASSERT_EQ(parts.size(), w.size());
      EXPECT_EQ(std::accumulate(parts.begin(), parts.end(), int64_t{0}), total);
      const double sum = std::accumulate(w.begin(), w.end(), 0.0);
      for (size_t i = 0; i < w.size(); ++i) {
        EXPECT_LT(std::abs(parts[i] - total * w[i] / sum), 1.0);
        if (w[i] == 0) {
          EXPECT_EQ(parts[i], 0);
        }
      }
    }
  }
  EXPECT_EQ(apportion(10, {1, 1, 1}), (std::vector<int64_t>{4, 3, 3}));
  EXPECT_EQ(apportion(5, {3, 1, 1}), (std::vector<int64_t>{3, 1, 1}));
  EXPECT_THROW(apportion(5, {0, 0}), loom::ConfigError);
  EXPECT_THROW(apportion(5, {1, -1}), loom::ConfigError);
  EXPECT_THROW(apportion(5, {1, NAN}), loom::ConfigError);
  EXPECT_THROW(apportion(5, {}), loom::ConfigError);
}

TEST(Partitioner, StridedIsTheSingleProcessOrderCutInEqualParts) {
  for (uint64_t seed : {0u, 5u}) {
    for (int w : {1, 2, 4}) {
      auto p = make_partitioner(opts("strided", w, 103, 8, seed));
      EXPECT_EQ(p->steps_per_epoch(), 103 / 8);
      for (int64_t epoch : {0, 1}) {
        const auto perm = epoch_permutation(103, seed, epoch);
        const auto e = epoch_of(*p, epoch);
        for (int64_t t = 0; t < p->steps_per_epoch(); ++t) {
          std::vector<int64_t> joined;
          for (int r = 0; r < w; ++r) joined.insert(joined.end(), e[r][t].begin(), e[r][t].end());
          EXPECT_EQ(joined, std::vector<int64_t>(perm.begin() + t * 8, perm.begin() + (t + 1) * 8));
        }
      }
    }
  }
}

TEST(Partitioner, PropertiesOverManyConfigurations) {
  struct Case {
    std::string scheme;
    int w;
    int64_t n, b;
    std::vector<double> weights;
  };
  std::vector<Case> cases;
  for (int64_t n : {17, 64, 250}) {
    for (int w : {1, 2, 3, 5}) {
      for (int64_t b : {w, 2 * w, 3 * w + (w > 1 ? 0 : 1), 15}) {
        if (b > n || b < w) continue;
        if (b % w == 0) cases.push_back({"strided", w, n, b, {}});
        cases.push_back({"random", w, n, b, {}});
        std::vector<double> weights(w);
        for (int r = 0; r < w; ++r) weights[r] = r + 1;
        cases.push_back({"proportional", w, n, b, weights});
        cases.push_back({"proportional", w, n, b, {}});
      }
    }
  }
  ASSERT_GT(cases.size(), 60u);
  for (const auto& c : cases) {
    for (uint64_t seed : {0u, 3u}) {
      SCOPED_TRACE(c.scheme + " W=" + std::to_string(c.w) + " N=" + std::to_string(c.n) + " B=" + std::to_string(c.b) +
                   " seed=" + std::to_string(seed));
      std::unique_ptr<Partitioner> p;
      try {
        p = make_partitioner(opts(c.scheme, c.w, c.n, c.b, seed, c.weights));
      } catch (const loom::ConfigError& e) {
        // Only defined refusals: random shards too small for one step, or a batch too
        // small to give every positively weighted worker a sample.
        const std::string what = e.what();
        EXPECT_TRUE(c.scheme == "random" || what.find("would get no sample") != std::string::npos) << what;
        continue;
      }
      auto again = make_partitioner(opts(c.scheme, c.w, c.n, c.b, seed, c.weights));
      const auto e0 = epoch_of(*p, 0), e1 = epoch_of(*p, 1);
      EXPECT_EQ(e0, epoch_of(*again, 0)) << "not deterministic";
      if (c.n > c.b) {
        EXPECT_NE(e0, e1) << "epochs do not differ";
      }
      std::set<int64_t> seen;
      int64_t total = 0;
      for (int r = 0; r < c.w; ++r) {
        for (int64_t t = 0; t < p->steps_per_epoch(); ++t) {
          const auto sizes = p->part_sizes(0, t);
          EXPECT_EQ(std::accumulate(sizes.begin(), sizes.end(), int64_t{0}), c.b);
          EXPECT_EQ(static_cast<int64_t>(e0[r][t].size()), sizes[r]);
          for (int64_t i : e0[r][t]) {
            EXPECT_GE(i, 0);
            EXPECT_LT(i, c.n);
            seen.insert(i);
            ++total;
          }
        }
      }
      EXPECT_EQ(static_cast<int64_t>(seen.size()), total) << "a sample was used twice in one epoch";
      if (c.scheme != "random") {
        EXPECT_EQ(total, (c.n / c.b) * c.b);  // every full global batch, each sample once
      }
      if (c.scheme == "proportional" && !c.weights.empty()) {
        const double sum = std::accumulate(c.weights.begin(), c.weights.end(), 0.0);
        const auto sizes = p->part_sizes(0, 0);
        for (int r = 0; r < c.w; ++r) EXPECT_LT(std::abs(sizes[r] - c.b * c.weights[r] / sum), 1.0);
      }
      if (c.scheme == "random") {
        // Shards are fixed across epochs: a rank's samples in epoch 1 come from its epoch-0 shard.
        for (int r = 0; r < c.w; ++r) {
          std::set<int64_t> s0, s1;
          for (const auto& step : e0[r]) s0.insert(step.begin(), step.end());
          for (const auto& step : e1[r]) s1.insert(step.begin(), step.end());
          std::set<int64_t> others;
          for (int q = 0; q < c.w; ++q) {
            if (q == r) continue;
            for (const auto& step : e0[q]) others.insert(step.begin(), step.end());
            for (const auto& step : e1[q]) others.insert(step.begin(), step.end());
          }
          for (int64_t i : s1) EXPECT_EQ(others.count(i), 0u) << "rank " << r << " read another shard's sample";
        }
      }
    }
  }
}

TEST(Partitioner, RandomShardsCoverTheDataSetAndDifferByAtMostOne) {
  PartitionOptions o = opts("random", 3, 100, 9);
  o.drop_last = false;
  auto p = make_partitioner(o);
  std::set<int64_t> all;
  for (int r = 0; r < 3; ++r) {
    std::set<int64_t> mine;
    for (int64_t t = 0; t < p->steps_per_epoch(); ++t) {
      for (int64_t i : p->indices(r, 0, t)) mine.insert(i);
    }
    EXPECT_GE(mine.size(), 33u);
    EXPECT_LE(mine.size(), 34u);
    all.insert(mine.begin(), mine.end());
  }
  EXPECT_EQ(all.size(), 100u);          // without drop_last every sample is seen each epoch
  EXPECT_EQ(p->steps_per_epoch(), 12);  // ceil(34 / 3)
  o.drop_last = true;
  EXPECT_EQ(make_partitioner(o)->steps_per_epoch(), 11);  // floor(33 / 3)
}

TEST(Partitioner, ProportionalWeightsCanChange) {
  auto p = make_partitioner(opts("proportional", 2, 1000, 60, 0, {1, 1}));
  EXPECT_EQ(p->part_sizes(0, 0), (std::vector<int64_t>{30, 30}));
  p->set_weights({2, 1});
  EXPECT_EQ(p->part_sizes(0, 1), (std::vector<int64_t>{40, 20}));
  // The cut moves, but the global batch (and so the single-process order) does not.
  const auto a = p->indices(0, 0, 1), b = p->indices(1, 0, 1);
  std::vector<int64_t> joined(a);
  joined.insert(joined.end(), b.begin(), b.end());
  const auto perm = epoch_permutation(1000, 0, 0);
  EXPECT_EQ(joined, std::vector<int64_t>(perm.begin() + 60, perm.begin() + 120));
  EXPECT_THROW(p->set_weights({1, 1, 1}), loom::ConfigError);
  EXPECT_THROW(make_partitioner(opts("strided", 2, 100, 10))->set_weights({1, 2}), loom::ConfigError);
}

TEST(Partitioner, EdgeCasesGiveOneLineErrors) {
  auto expect_error = [](const PartitionOptions& o, const std::string& needle) {
    try {
      make_partitioner(o);
      ADD_FAILURE() << "no error for " << needle;
    } catch (const loom::ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
    }
  };
  expect_error(opts("strided", 2, 0, 1), "training set is empty");                       // N = 0
  expect_error(opts("strided", 4, 3, 3), "smaller than the 4 data-parallel workers");    // N < W
  expect_error(opts("random", 4, 3, 3), "3 samples cannot make 4 non-empty shards");     // N < W
  expect_error(opts("strided", 4, 100, 2), "smaller than the 4 data-parallel workers");  // B < W
  expect_error(opts("random", 4, 100, 2), "smaller than the 4 data-parallel workers");
  expect_error(opts("strided", 3, 100, 10), "does not divide evenly among 3 workers");
  expect_error(opts("strided", 2, 100, 200), "larger than the training set");
  expect_error(opts("proportional", 3, 100, 10, 0, {1, 1}), "2 weights for 3 data-parallel workers");
  expect_error(opts("proportional", 2, 100, 10, 0, {0, 0}), "must not all be zero");
  expect_error(opts("proportional", 3, 100, 2, 0, {1, 1, 1}), "worker 2 (weight 1) would get no sample");
  expect_error(opts("strided", 2, 100, 10, 0, {1, 1}), "applies to --partition proportional");
  try {
    parse_scheme("blocks");
    ADD_FAILURE() << "parse_scheme accepted 'blocks'";
  } catch (const loom::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("--partition: unknown value 'blocks' (expected one of: strided, random, "
                                         "proportional)"),
              std::string::npos)
        << e.what();
  }
  // A zero weight is defined: that worker gets nothing.
  auto p = make_partitioner(opts("proportional", 3, 100, 10, 0, {1, 0, 1}));
  EXPECT_EQ(p->part_sizes(0, 0), (std::vector<int64_t>{5, 0, 5}));
  EXPECT_TRUE(p->indices(1, 0, 0).empty());
}

TEST(Partitioner, ParseWeights) {
  EXPECT_EQ(parse_weights("3,1,1"), (std::vector<double>{3, 1, 1}));
  EXPECT_EQ(parse_weights("0.5,1.5"), (std::vector<double>{0.5, 1.5}));
  EXPECT_TRUE(parse_weights("").empty());
  EXPECT_THROW(parse_weights("3,x"), loom::ConfigError);
  EXPECT_THROW(parse_weights("3,-1"), loom::ConfigError);
  EXPECT_THROW(parse_weights("3,"), loom::ConfigError);
  EXPECT_THROW(parse_weights("inf"), loom::ConfigError);
}

}  // namespace
