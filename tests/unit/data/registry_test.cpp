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
    EXPECT_STREQ(e.what(),
                 "unknown data set 'mnist' (known: fashion-mnist, synthetic; or a file source npy:..., tensors:..., "
                 "csv:..., idx:...)");
  }
}

TEST(DataRegistry, SourceKinds) {
  EXPECT_EQ(source_kinds(), (std::vector<std::string>{"npy", "tensors", "csv", "idx"}));
  EXPECT_TRUE(has_test_split("fashion-mnist"));
  EXPECT_TRUE(has_test_split("synthetic"));
  EXPECT_FALSE(has_test_split("npy:x.npy,y.npy"));
  EXPECT_FALSE(has_test_split("idx:/some/dir"));
}

TEST(DataRegistry, UnknownSourceKindListsTheKnownOnes) {
  DataOptions o;
  o.name = "parquet:x.parquet";
  try {
    load_dataset(o, Split::train);
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(),
                 "unknown data source kind 'parquet' in 'parquet:x.parquet' (known kinds: npy, tensors, csv, idx; "
                 "built-in sets: fashion-mnist, synthetic)");
  }
}

TEST(DataRegistry, MalformedSources) {
  DataOptions o;
  for (const char* name : {"npy:x.npy", "npy:,y.npy", "npy:x.npy,", "npy:a,b,c"}) {
    o.name = name;
    try {
      load_dataset(o, Split::train);
      ADD_FAILURE() << "no error for " << name;
    } catch (const ConfigError& e) {
      EXPECT_EQ(std::string(e.what()),
                std::string("data source '") + name + "' needs two files: npy:INPUTS.npy,TARGETS.npy");
    }
  }
  for (const char* name : {"csv:", "tensors:", "idx:"}) {
    o.name = name;
    EXPECT_THROW(load_dataset(o, Split::train), ConfigError) << name;
  }
}

TEST(DataRegistry, BuiltInSetsRejectNanUnlessAllowed) {
  DataOptions o;
  o.name = "synthetic";
  o.synthetic.num_samples = 10;
  EXPECT_TRUE(load_dataset(o, Split::train).reject_nan);
  o.allow_nan = true;
  EXPECT_FALSE(load_dataset(o, Split::train).reject_nan);
  // The tensors are those of make_synthetic, bit for bit.
  EXPECT_TRUE(at::equal(load_dataset(o, Split::train).inputs, make_synthetic(o.synthetic, Split::train).inputs));
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
