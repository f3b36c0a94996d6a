#include "loom/data/dataset.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "loom/core/error.h"

namespace loom::data {
namespace {

TEST(DataRegistry, Names) {
  EXPECT_EQ(dataset_names(), (std::vector<std::string>{"fashion-mnist", "synthetic"}));
  EXPECT_EQ(DataOptions{}.name, "fashion-mnist");
}

TEST(DataRegistry, UnknownNameListsTheKnownOnes) {
  DataOptions o;
  o.name = "mnist";
  try {
    load_dataset(o, Split::train);
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), "unknown data set 'mnist' (known: fashion-mnist, synthetic)");
  }
}

TEST(DataRegistry, Synthetic) {
  DataOptions o;
  o.name = "synthetic";
  o.dir = "/ignored";
  o.synthetic.num_samples = 100;
  o.synthetic.num_test_samples = 30;
  o.synthetic.seed = 9;
  const Dataset train = load_dataset(o, Split::train);
  EXPECT_TRUE(at::equal(train.inputs, make_synthetic(o.synthetic, Split::train).inputs));
  EXPECT_EQ(load_dataset(o, Split::test).size(), 30);
}

TEST(DataRegistry, FashionMnistFromTheDefaultDir) {
  const Dataset d = load_dataset(DataOptions{}, Split::test);
  EXPECT_EQ(d.name, "fashion-mnist");
  EXPECT_EQ(d.size(), 10000);
}

TEST(DataRegistry, FashionMnistFromAGivenDir) {
  DataOptions o;
  o.dir = "/nonexistent-loom-dir";
  try {
    load_dataset(o, Split::test);
    FAIL() << "no error";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent-loom-dir/t10k-images-idx3-ubyte.gz"), std::string::npos);
  }
}

}  // namespace
}  // namespace loom::data
