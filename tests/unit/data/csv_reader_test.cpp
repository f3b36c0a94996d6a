#include "loom/data/csv_reader.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
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
using testing::write_file;

class CsvReader : public DataFileTest {
 protected:
  CsvTable read(const std::string& text, const std::string& target = "") {
    write_file(path("f.csv"), text);
    return read_csv(path("f.csv"), target);
  }
  std::string error(const std::string& text, const std::string& target = "") {
    write_file(path("f.csv"), text);
    return error_of([&] { read_csv(path("f.csv"), target); });
  }
  std::string file() const { return path("f.csv"); }
};

TEST_F(CsvReader, TheLastColumnIsTheTargetByDefault) {
  const CsvTable t = read("a,b,label\n1,2.5,0\n-3e2, 4 ,1\r\n\n+5,nan,2\n");
  EXPECT_EQ(t.features, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(t.target, "label");
  ASSERT_EQ(t.inputs.scalar_type(), at::kFloat);
  ASSERT_EQ(t.inputs.sizes().vec(), (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(t.inputs[0][1].item<float>(), 2.5f);
  EXPECT_EQ(t.inputs[1][0].item<float>(), -300.0f);
  EXPECT_EQ(t.inputs[1][1].item<float>(), 4.0f);
  EXPECT_EQ(t.inputs[2][0].item<float>(), 5.0f);
  EXPECT_TRUE(std::isnan(t.inputs[2][1].item<float>()));
  EXPECT_TRUE(at::equal(t.targets, at::tensor({0.0f, 1.0f, 2.0f})));
}

TEST_F(CsvReader, TargetColumnByName) {
  const CsvTable t = read("y, x1 ,x2\n0.5,1,2\n1.5,3,4", "y");  // no final newline
  EXPECT_EQ(t.features, (std::vector<std::string>{"x1", "x2"}));
  EXPECT_TRUE(at::equal(t.targets, at::tensor({0.5f, 1.5f})));
  EXPECT_TRUE(at::equal(t.inputs, at::tensor({1.0f, 2.0f, 3.0f, 4.0f}).view({2, 2})));
}

TEST_F(CsvReader, ValuesBeyondFloatSaturate) {
  const CsvTable t = read("a,y\n1e39,0\n-1e39,1\n");
  EXPECT_EQ(t.inputs[0][0].item<float>(), INFINITY);
  EXPECT_EQ(t.inputs[1][0].item<float>(), -INFINITY);
}

TEST_F(CsvReader, WrongColumnCountNamesTheLine) {
  EXPECT_EQ(error("a,b,y\n1,2,3\n\n1,2\n"), file() + ":4: 2 values, but the header has 3 columns");
  EXPECT_EQ(error("a,b,y\n1,2,3,4\n"), file() + ":2: 4 values, but the header has 3 columns");
}

TEST_F(CsvReader, NonNumberNamesTheLineAndColumn) {
  EXPECT_EQ(error("a,b,y\n1,2,3\n1,two,3\n"), file() + ":3: column 'b' holds 'two', not a number");
  EXPECT_EQ(error("a,b,y\n1,,3\n"), file() + ":2: column 'b' holds '', not a number");
  EXPECT_TRUE(contains(error("a,b,y\n1,\"2\",3\n"), ":2: column 'b' holds '\"2\"', not a number"));
  EXPECT_TRUE(contains(error("a,b,y\n1,2 3,3\n"), ":2: column 'b' holds '2 3', not a number"));
}

TEST_F(CsvReader, UnknownTargetColumnListsTheColumns) {
  EXPECT_EQ(error("a,b,c\n1,2,3\n", "label"), file() + ": no column named 'label' for the targets (columns: a, b, c)");
}

TEST_F(CsvReader, EmptyFileAndHeaderOnly) {
  EXPECT_EQ(error(""), file() + ": empty file (expected a header line of column names)");
  EXPECT_EQ(error("\n \n"), file() + ": empty file (expected a header line of column names)");
  EXPECT_EQ(error("a,b,y\n"), file() + ": no data rows after the header line");
}

TEST_F(CsvReader, HeaderProblems) {
  EXPECT_TRUE(contains(error(",a,y\n0,1,2\n"), file() + ":1: column 1 has no name in the header line"));
  EXPECT_TRUE(contains(error("a,a,y\n0,1,2\n"), file() + ":1: the column name 'a' appears twice"));
  EXPECT_TRUE(contains(error("\"a\",y\n0,1\n"), file() + ":1: quoted column names are not supported"));
  EXPECT_TRUE(contains(error("y\n0\n"), file() + ":1: a single column 'y'"));
}

TEST_F(CsvReader, MissingFile) {
  EXPECT_TRUE(contains(error_of([&] { read_csv(path("none.csv"), ""); }), "cannot open " + path("none.csv")));
}

TEST_F(CsvReader, ThroughLoadDataset) {
  write_file(path("f.csv"), "x,label\n0.5,1\n1.5,0\n2.5,2\n");
  DataOptions o;
  o.name = "csv:" + path("f.csv");
  const Dataset d = load_dataset(o, Split::test);  // a file source is one split
  EXPECT_EQ(d.name, o.name);
  EXPECT_EQ(d.sample_shape, (std::vector<int64_t>{1}));
  EXPECT_EQ(d.targets.scalar_type(), at::kFloat);
  EXPECT_EQ(d.num_classes, 0);
  EXPECT_TRUE(d.reject_nan);
  const Dataset c = with_targets(d, TargetKind::classes);
  EXPECT_EQ(c.num_classes, 3);
  EXPECT_TRUE(at::equal(gather(c, std::vector<int64_t>{2, 0}).targets, at::tensor({2, 1}, at::kLong)));
  o.target_column = "x";
  const Dataset by_name = load_dataset(o, Split::train);
  EXPECT_TRUE(at::equal(by_name.targets, at::tensor({0.5f, 1.5f, 2.5f})));
  // A NaN feature is refused when its row is read.
  write_file(path("f.csv"), "x,label\n0.5,1\nnan,0\n");
  o.target_column.clear();
  EXPECT_EQ(error_of([&] { slice(load_dataset(o, Split::train), 0, 2); }),
            o.name + ": row 1 holds a NaN in its inputs (pass --allow-nan to train on it)");
}

}  // namespace
}  // namespace loom::data
