#include "loom/data/dataset.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "loom/core/error.h"

namespace loom::data {
namespace {

// Sample i has inputs filled with i and target i % 3.
Dataset numbered(int64_t n) {
  Dataset d;
  d.inputs = at::arange(n, at::kFloat).view({n, 1, 1, 1}).expand({n, 1, 2, 3}).contiguous();
  d.targets = at::arange(n, at::kLong).remainder(3);
  d.name = "numbered";
  d.sample_shape = {1, 2, 3};
  d.num_classes = 3;
  return d;
}

void expect_rows(const Batch& b, const std::vector<int64_t>& indices) {
  ASSERT_EQ(b.size(), static_cast<int64_t>(indices.size()));
  EXPECT_EQ(b.inputs.sizes().vec(), (std::vector<int64_t>{static_cast<int64_t>(indices.size()), 1, 2, 3}));
  EXPECT_TRUE(b.inputs.is_contiguous());
  ASSERT_EQ(b.targets.scalar_type(), at::kLong);
  for (size_t k = 0; k < indices.size(); ++k) {
    const int64_t i = indices[k];
    const auto row = static_cast<int64_t>(k);
    EXPECT_TRUE(at::equal(b.inputs[row], at::full({1, 2, 3}, static_cast<float>(i)))) << "row " << k;
    EXPECT_EQ(b.targets[row].item<int64_t>(), i % 3) << "row " << k;
  }
}

TEST(Dataset, Size) {
  EXPECT_EQ(numbered(7).size(), 7);
  EXPECT_EQ(Dataset{}.size(), 0);
  EXPECT_STREQ(to_string(Split::train), "train");
  EXPECT_STREQ(to_string(Split::test), "test");
}

TEST(Gather, ReturnsTheRowsInOrder) {
  const Dataset d = numbered(10);
  const std::vector<int64_t> indices = {7, 0, 3, 3, 9};
  expect_rows(gather(d, indices), indices);
}

TEST(Gather, TensorIndicesOfAnyIntegerType) {
  const Dataset d = numbered(10);
  expect_rows(gather(d, at::tensor({4, 1, 8}, at::kLong)), {4, 1, 8});
  expect_rows(gather(d, at::tensor({2, 5}, at::kInt)), {2, 5});
  // A non-contiguous view.
  expect_rows(gather(d, at::arange(10, at::kLong).slice(0, 1, 10, 3)), {1, 4, 7});
}

TEST(Gather, BatchesDoNotAliasTheDataSet) {
  const Dataset d = numbered(4);
  Batch b = gather(d, std::vector<int64_t>{1});
  b.inputs.fill_(-1);
  EXPECT_EQ(d.inputs[1].min().item<float>(), 1.0f);
}

TEST(Gather, EmptyIndices) {
  const Dataset d = numbered(4);
  EXPECT_EQ(gather(d, std::vector<int64_t>{}).size(), 0);
  EXPECT_EQ(gather(d, at::empty({0}, at::kLong)).inputs.sizes().vec(), (std::vector<int64_t>{0, 1, 2, 3}));
}

TEST(Gather, OutOfRangeIsAnError) {
  const Dataset d = numbered(4);
  try {
    gather(d, std::vector<int64_t>{0, 4});
    FAIL() << "no error";
  } catch (const DataError& e) {
    EXPECT_STREQ(e.what(), "gather: index 4 is out of range for data set 'numbered' of 4 samples");
  }
  EXPECT_THROW(gather(d, std::vector<int64_t>{-1}), DataError);
  EXPECT_THROW(gather(d, at::tensor({0, -2}, at::kLong)), DataError);
  EXPECT_THROW(gather(d, at::tensor({5}, at::kLong)), DataError);
  EXPECT_THROW(gather(d, at::tensor({0.0f})), DataError);
  EXPECT_THROW(gather(d, at::zeros({2, 2}, at::kLong)), DataError);
}

}  // namespace
}  // namespace loom::data
