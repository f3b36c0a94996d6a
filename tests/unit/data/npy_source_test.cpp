// load_dataset("npy:X,Y"), and what every file source shares: gather()/slice() on a
// memory-mapped set, the conversions, the NaN policy and with_targets().
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "data_files.h"
#include "loom/core/error.h"
#include "loom/data/dataset.h"

namespace loom::data {
namespace {

using testing::contains;
using testing::DataFileTest;
using testing::error_of;
using testing::npy_of;
using testing::write_file;

// The mapping of `file` in this process (/proc/self/smaps): its address range and how
// many kB of it are resident in this process's page tables.
struct Mapping {
  uintptr_t lo = 0, hi = 0;
  int64_t rss_kb = -1;
};

Mapping mapping_of(const std::string& file) {
  std::ifstream smaps("/proc/self/smaps");
  Mapping m;
  bool in = false;
  for (std::string line; std::getline(smaps, line);) {
    const bool header = line.find('-') < line.find(' ') && line.find(':') > line.find(' ');
    if (header) {
      in = line.size() >= file.size() && line.compare(line.size() - file.size(), file.size(), file) == 0;
      if (in) {
        char dash = 0;
        std::istringstream(line) >> std::hex >> m.lo >> dash >> m.hi;
      }
    } else if (in && line.rfind("Rss:", 0) == 0) {
      m.rss_kb = std::stoll(line.substr(4));
    }
  }
  return m;
}

bool inside(const Mapping& m, const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  return a >= m.lo && a < m.hi;
}

class NpySource : public DataFileTest {
 protected:
  // Writes x.npy and y.npy and loads "npy:x.npy,y.npy".
  template <typename X, typename Y>
  Dataset load(const std::string& xd, const std::vector<int64_t>& xs, const std::vector<X>& x, const std::string& yd,
               const std::vector<int64_t>& ys, const std::vector<Y>& y, bool allow_nan = false) {
    write_file(path("x.npy"), npy_of(xd, xs, x));
    write_file(path("y.npy"), npy_of(yd, ys, y));
    DataOptions o;
    o.name = source();
    o.allow_nan = allow_nan;
    return load_dataset(o, Split::train);
  }
  std::string source() const { return "npy:" + path("x.npy") + "," + path("y.npy"); }

  // The DataError of loading source() with x.npy and y.npy as they are.
  std::string load_error() {
    DataOptions o;
    o.name = source();
    return error_of([&] { load_dataset(o, Split::train); });
  }
};

std::vector<float> iota(size_t n, float scale = 1) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<float>(i) * scale;
  return v;
}

TEST_F(NpySource, LoadsAMappedSet) {
  const Dataset d = load<float, int64_t>("<f4", {4, 2, 3}, iota(24), "<i8", {4}, {2, 0, 1, 2});
  EXPECT_EQ(d.name, source());
  EXPECT_EQ(d.size(), 4);
  EXPECT_EQ(d.sample_shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(d.inputs.scalar_type(), at::kFloat);
  EXPECT_EQ(d.targets.scalar_type(), at::kLong);
  EXPECT_EQ(d.num_classes, 3);
  EXPECT_EQ(d.target_width(), 1);
  EXPECT_TRUE(d.reject_nan);
  // The inputs are the file's pages, not a copy; the targets are copied (small).
  const Mapping x = mapping_of(path("x.npy"));
  EXPECT_TRUE(inside(x, d.inputs.data_ptr())) << "inputs were copied";
  EXPECT_FALSE(inside(mapping_of(path("y.npy")), d.targets.data_ptr()));
  // Batches are fresh float32 tensors, never the mapping.
  const Batch b = gather(d, std::vector<int64_t>{3, 1});
  EXPECT_FALSE(inside(x, b.inputs.data_ptr()));
  EXPECT_TRUE(at::equal(b.inputs, at::arange(24, at::kFloat).view({4, 2, 3}).index_select(0, at::tensor({3, 1}))));
  EXPECT_TRUE(at::equal(b.targets, at::tensor({2, 0}, at::kLong)));
  const Batch s = slice(d, 1, 2);
  EXPECT_FALSE(inside(x, s.inputs.data_ptr()));
  EXPECT_TRUE(at::equal(s.inputs, at::arange(6, 18, at::kFloat).view({2, 2, 3})));
  EXPECT_TRUE(at::equal(s.targets, at::tensor({0, 1}, at::kLong)));
}

// gather() and slice() on a mapped set of each dtype return what they return on the
// same values held in memory as float32.
TEST_F(NpySource, MappedBatchesEqualInMemoryOnes) {
  const std::vector<int64_t> y = {0, 1, 0, 1, 1, 0};
  const std::vector<int64_t> rows = {5, 0, 2, 2, 4};
  const auto check = [&](const Dataset& mapped, const at::Tensor& expected_inputs, const char* what) {
    Dataset memory;
    memory.inputs = expected_inputs;
    memory.targets = at::tensor(y, at::kLong);
    memory.name = "memory";
    const Batch a = gather(mapped, rows), b = gather(memory, rows);
    EXPECT_EQ(a.inputs.scalar_type(), at::kFloat) << what;
    EXPECT_TRUE(a.inputs.is_contiguous()) << what;
    EXPECT_TRUE(at::equal(a.inputs, b.inputs)) << what;
    EXPECT_TRUE(at::equal(a.targets, b.targets)) << what;
    EXPECT_TRUE(at::equal(gather(mapped, at::tensor(rows, at::kInt)).inputs, b.inputs)) << what;
    EXPECT_TRUE(at::equal(slice(mapped, 1, 4).inputs, slice(memory, 1, 4).inputs)) << what;
  };
  std::vector<double> f8(12);
  std::vector<uint8_t> u1(12);
  std::vector<int64_t> i8(12);
  for (size_t i = 0; i < 12; ++i) {
    f8[i] = 0.1 * static_cast<double>(i) - 0.5;
    u1[i] = static_cast<uint8_t>(i * 23);
    i8[i] = static_cast<int64_t>(i) * 1000 - 3000;
  }
  check(load<float, int64_t>("<f4", {6, 2}, iota(12, 0.25f), "<i8", {6}, y), at::tensor(iota(12, 0.25f)).view({6, 2}),
        "f4");
  check(load<double, int64_t>("<f8", {6, 2}, f8, "<i8", {6}, y), at::tensor(f8).to(at::kFloat).view({6, 2}), "f8");
  // uint8 inputs are not rescaled: 230 stays 230.0.
  const Dataset bytes = load<uint8_t, int64_t>("|u1", {6, 2}, u1, "<i8", {6}, y);
  check(bytes, at::tensor(std::vector<float>(u1.begin(), u1.end())).view({6, 2}), "u1");
  EXPECT_EQ(slice(bytes, 5, 1).inputs[0][0].item<float>(), 230.0f);
  check(load<int64_t, int64_t>("<i8", {6, 2}, i8, "<i8", {6}, y),
        at::tensor(std::vector<float>(i8.begin(), i8.end())).view({6, 2}), "i8");
}

TEST_F(NpySource, OneDimensionalInputsBecomeOneFeature) {
  const Dataset d = load<float, int64_t>("<f4", {3}, {1, 2, 3}, "<i8", {3}, {0, 1, 0});
  EXPECT_EQ(d.sample_shape, (std::vector<int64_t>{1}));
  EXPECT_EQ(slice(d, 0, 3).inputs.sizes().vec(), (std::vector<int64_t>{3, 1}));
}

TEST_F(NpySource, TargetConversions) {
  // Integer [N] of any width: int64 classes.
  Dataset d = load<float, int32_t>("<f4", {3, 1}, {0, 0, 0}, "<i4", {3}, {4, 0, 1});
  EXPECT_EQ(d.targets.scalar_type(), at::kLong);
  EXPECT_EQ(d.num_classes, 5);
  // Integer [N, 1]: int64 [N].
  d = load<float, uint8_t>("<f4", {3, 1}, {0, 0, 0}, "|u1", {3, 1}, {1, 0, 1});
  EXPECT_EQ(d.targets.sizes().vec(), (std::vector<int64_t>{3}));
  EXPECT_EQ(d.targets.scalar_type(), at::kLong);
  EXPECT_EQ(d.num_classes, 2);
  // Negative integers: kept, but no class count (with_targets(classes) names the row).
  d = load<float, int64_t>("<f4", {2, 1}, {0, 0}, "<i8", {2}, {-1, 1});
  EXPECT_EQ(d.num_classes, 0);
  // Float64 [N]: float32 values.
  d = load<float, double>("<f4", {2, 1}, {0, 0}, "<f8", {2}, {0.5, -1.25});
  EXPECT_EQ(d.targets.scalar_type(), at::kFloat);
  EXPECT_EQ(d.num_classes, 0);
  EXPECT_EQ(d.target_width(), 1);
  EXPECT_TRUE(at::equal(slice(d, 0, 2).targets, at::tensor({0.5f, -1.25f})));
  // Float [N, K] and integer [N, K > 1]: float32 [N, K].
  d = load<float, float>("<f4", {2, 1}, {0, 0}, "<f4", {2, 3}, {1, 0, 1, 0, 1, 1});
  EXPECT_EQ(d.target_width(), 3);
  EXPECT_EQ(gather(d, std::vector<int64_t>{1}).targets.sizes().vec(), (std::vector<int64_t>{1, 3}));
  d = load<float, int64_t>("<f4", {2, 1}, {0, 0}, "<i8", {2, 2}, {1, 0, 0, 1});
  EXPECT_EQ(d.targets.scalar_type(), at::kFloat);
  EXPECT_EQ(d.target_width(), 2);
}

TEST_F(NpySource, RowCountsMustMatch) {
  write_file(path("x.npy"), npy_of("<f4", {10, 2}, iota(20)));
  write_file(path("y.npy"), npy_of("<i8", {9}, std::vector<int64_t>(9)));
  EXPECT_EQ(load_error(), source() + ": inputs have 10 rows but targets 9");
}

TEST_F(NpySource, EmptyAndScalarArrays) {
  write_file(path("x.npy"), npy_of("<f4", {0, 784}, std::vector<float>{}));
  write_file(path("y.npy"), npy_of("<i8", {0}, std::vector<int64_t>{}));
  EXPECT_EQ(load_error(), source() + ": the inputs hold 0 rows (an empty array)");
  write_file(path("x.npy"), npy_of("<f4", {}, std::vector<float>{1}));
  EXPECT_TRUE(contains(load_error(), source() + ": the inputs are a 0-d array"));
  write_file(path("x.npy"), npy_of("<f4", {1, 1}, std::vector<float>{1}));
  write_file(path("y.npy"), npy_of("<f4", {1, 1, 1}, std::vector<float>{1}));
  EXPECT_TRUE(contains(load_error(), source() + ": the targets have shape [1, 1, 1]"));
}

TEST_F(NpySource, ErrorsOfEitherFileNameIt) {
  write_file(path("x.npy"), npy_of("<f4", {2, 2}, iota(3)));
  write_file(path("y.npy"), npy_of("<i8", {2}, std::vector<int64_t>(2)));
  EXPECT_TRUE(contains(load_error(), path("x.npy") + ": truncated"));
  write_file(path("x.npy"), npy_of("<f4", {2, 2}, iota(4)));
  write_file(path("y.npy"), npy_of(">i8", {2}, std::vector<int64_t>(2)));
  EXPECT_TRUE(contains(load_error(), path("y.npy") + ": big-endian"));
}

TEST_F(NpySource, RejectsNanRowsAsTheyAreRead) {
  std::vector<float> x = iota(8);
  x[7] = NAN;  // row 3
  const Dataset d = load<float, int64_t>("<f4", {4, 2}, x, "<i8", {4}, {0, 1, 0, 1});
  EXPECT_NO_THROW(gather(d, std::vector<int64_t>{0, 1, 2}));
  EXPECT_NO_THROW(slice(d, 0, 3));
  EXPECT_EQ(error_of([&] {
              gather(d, std::vector<int64_t>{1, 3});
            }),
            source() + ": row 3 holds a NaN in its inputs (pass --allow-nan to train on it)");
  EXPECT_TRUE(contains(error_of([&] { gather(d, at::tensor({3}, at::kLong)); }), ": row 3 holds a NaN"));
  EXPECT_TRUE(contains(error_of([&] { slice(d, 2, 2); }), source() + ": row 3 holds a NaN"));
  // --allow-nan: the NaN reaches the batch.
  const Dataset allowed = load<float, int64_t>("<f4", {4, 2}, x, "<i8", {4}, {0, 1, 0, 1}, /*allow_nan=*/true);
  EXPECT_FALSE(allowed.reject_nan);
  EXPECT_TRUE(std::isnan(gather(allowed, std::vector<int64_t>{3}).inputs[0][1].item<float>()));
  // float64 inputs are checked too.
  const Dataset f8 = load<double, int64_t>("<f8", {2, 1}, {1.0, NAN}, "<i8", {2}, {0, 1});
  EXPECT_TRUE(contains(error_of([&] { slice(f8, 0, 2); }), ": row 1 holds a NaN"));
}

TEST_F(NpySource, RejectsNanTargetsAtLoad) {
  write_file(path("x.npy"), npy_of("<f4", {3, 1}, iota(3)));
  write_file(path("y.npy"), npy_of<float>("<f4", {3}, {0.5f, 1, NAN}));
  EXPECT_EQ(load_error(), source() + ": row 2 holds a NaN in its targets (pass --allow-nan to keep it)");
}

// Loading reads the headers and the targets, never the inputs' pages: a worker's
// resident memory grows only with the rows it gathers.
TEST_F(NpySource, LoadingTouchesNoInputPages) {
  const int64_t rows = 4096, width = 1024;  // 16 MiB of float32
  const Dataset d = load<float, int64_t>("<f4", {rows, width}, std::vector<float>(rows * width, 1.0f), "<i8", {rows},
                                         std::vector<int64_t>(rows, 1));
  const Mapping after_load = mapping_of(path("x.npy"));
  ASSERT_GE(after_load.rss_kb, 0) << "no mapping of x.npy";
  // The kernel maps a little around each fault (fault-around, large page-cache folios:
  // up to 2 MiB here), so the bounds leave room for that, far below the 16 MiB a scan
  // of the inputs maps.
  EXPECT_LE(after_load.rss_kb, 4096) << "kB of the 16 MiB inputs resident after loading";
  gather(d, std::vector<int64_t>{7, 4000});
  EXPECT_LE(mapping_of(path("x.npy")).rss_kb, 8192) << "kB resident after gathering 2 rows";
}

TEST(WithTargets, ClassesFromWholeFloats) {
  Dataset d;
  d.name = "csv:f.csv";
  d.inputs = at::zeros({4, 2});
  d.targets = at::tensor({2.0f, 0.0f, 5.0f, 1.0f});
  const Dataset c = with_targets(d, TargetKind::classes);
  EXPECT_EQ(c.targets.scalar_type(), at::kLong);
  EXPECT_TRUE(at::equal(c.targets, at::tensor({2, 0, 5, 1}, at::kLong)));
  EXPECT_EQ(c.num_classes, 6);
  EXPECT_EQ(d.targets.scalar_type(), at::kFloat);  // the argument's copy is untouched
  // Integer classes are checked and counted again.
  d.targets = at::tensor({3, 1, 0, 0}, at::kLong);
  EXPECT_EQ(with_targets(d, TargetKind::classes).num_classes, 4);
}

TEST(WithTargets, WhatIsNotAClassNamesTheRow) {
  Dataset d;
  d.name = "csv:f.csv";
  d.inputs = at::zeros({20, 1});
  d.targets = at::zeros({20});
  d.targets[17] = 2.5f;
  EXPECT_EQ(error_of([&] { with_targets(d, TargetKind::classes); }),
            "csv:f.csv: target of row 17 is 2.5, not a class index (use --loss mse for real-valued targets)");
  d.targets[17] = 0.0f;
  d.targets[4] = -1.0f;
  EXPECT_TRUE(contains(error_of([&] { with_targets(d, TargetKind::classes); }), "target of row 4 is -1,"));
  d.targets[4] = NAN;
  EXPECT_TRUE(contains(error_of([&] { with_targets(d, TargetKind::classes); }), "target of row 4 is nan,"));
  d.targets[4] = 1e9f;
  EXPECT_TRUE(contains(error_of([&] { with_targets(d, TargetKind::classes); }), "target of row 4 is 1000000000,"));
  d.targets = at::zeros({20}, at::kLong);
  d.targets[9] = -3;
  EXPECT_TRUE(contains(error_of([&] { with_targets(d, TargetKind::classes); }),
                       "csv:f.csv: target of row 9 is -3, not a class index"));
  d.targets = at::zeros({20, 2});
  EXPECT_TRUE(contains(error_of([&] { with_targets(d, TargetKind::classes); }),
                       "csv:f.csv: the targets are [20, 2], not one class index per row"));
}

TEST(WithTargets, Values) {
  Dataset d;
  d.name = "x";
  d.inputs = at::zeros({3, 1});
  d.targets = at::tensor({2, 0, 1}, at::kLong);
  d.num_classes = 3;
  const Dataset v = with_targets(d, TargetKind::values);
  EXPECT_EQ(v.targets.scalar_type(), at::kFloat);
  EXPECT_TRUE(at::equal(v.targets, at::tensor({2.0f, 0.0f, 1.0f})));
  EXPECT_EQ(v.num_classes, 0);
  d.targets = at::rand({3, 4});
  EXPECT_TRUE(at::equal(with_targets(d, TargetKind::values).targets, d.targets));
  EXPECT_EQ(with_targets(d, TargetKind::values).target_width(), 4);
}

}  // namespace
}  // namespace loom::data
