#include "loom/data/tensor_file.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/jit/serialization/pickle.h>

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

// The bytes torch::pickle_save writes: the zip format torch.save writes and torch.load
// reads.
void save(const std::string& path, const c10::IValue& value) {
  const std::vector<char> bytes = torch::jit::pickle_save(value);
  write_file(path, std::string(bytes.begin(), bytes.end()));
}

c10::impl::GenericDict dict_of(const std::vector<std::pair<std::string, c10::IValue>>& entries) {
  c10::impl::GenericDict d(c10::StringType::get(), c10::AnyType::get());
  for (const auto& [k, v] : entries) d.insert(k, v);
  return d;
}

class TensorFile : public DataFileTest {
 protected:
  std::string error(const c10::IValue& value) {
    save(path("t.pt"), value);
    return error_of([&] { read_tensor_file(path("t.pt")); });
  }
  std::string source() const { return "tensors:" + path("t.pt"); }
  Dataset load() {
    DataOptions o;
    o.name = source();
    return load_dataset(o, Split::train);
  }
};

TEST_F(TensorFile, LoadsInputsAndTargets) {
  const at::Tensor x = at::randn({6, 2, 2});
  save(path("t.pt"), dict_of({{"inputs", x}, {"targets", at::tensor({0, 2, 1, 2, 0, 1}, at::kLong)}}));
  const Dataset d = load();
  EXPECT_EQ(d.name, source());
  EXPECT_EQ(d.sample_shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(d.num_classes, 3);
  EXPECT_TRUE(at::equal(d.inputs, x));
  EXPECT_TRUE(at::equal(gather(d, std::vector<int64_t>{4, 1}).inputs, x.index_select(0, at::tensor({4, 1}))));
}

TEST_F(TensorFile, NonContiguousAndOtherDtypes) {
  const at::Tensor x = at::arange(12, at::kDouble).view({3, 4}).t();  // [4, 3], not contiguous
  save(path("t.pt"), dict_of({{"inputs", x}, {"targets", at::tensor({0.5, 1.5, 2.5, 3.5}, at::kDouble)}}));
  const Dataset d = load();
  EXPECT_TRUE(d.inputs.is_contiguous());
  EXPECT_TRUE(at::equal(slice(d, 0, 4).inputs, x.to(at::kFloat)));
  EXPECT_EQ(d.targets.scalar_type(), at::kFloat);
}

TEST_F(TensorFile, NotADict) {
  EXPECT_EQ(error(at::zeros({3})),
            path("t.pt") + ": holds a Tensor, not a dict {\"inputs\": tensor, \"targets\": tensor}");
  EXPECT_TRUE(contains(error(c10::IValue(int64_t{3})), path("t.pt") + ": holds a Int, not a dict"));
}

TEST_F(TensorFile, MissingKeyListsTheKeys) {
  EXPECT_EQ(error(dict_of({{"inputs", at::zeros({2})}, {"labels", at::zeros({2})}})),
            path("t.pt") + ": the dict has no key 'targets' (keys: inputs, labels)");
  EXPECT_TRUE(contains(error(dict_of({{"x", at::zeros({2})}})), ": the dict has no key 'inputs' (keys: x)"));
}

TEST_F(TensorFile, NonTensorValue) {
  EXPECT_EQ(error(dict_of({{"inputs", at::zeros({2})}, {"targets", c10::IValue(int64_t{5})}})),
            path("t.pt") + ": 'targets' holds a Int, not a tensor");
}

TEST_F(TensorFile, MismatchedRows) {
  save(path("t.pt"), dict_of({{"inputs", at::zeros({5, 2})}, {"targets", at::zeros({4}, at::kLong)}}));
  EXPECT_EQ(error_of([&] { load(); }), source() + ": inputs have 5 rows but targets 4");
}

TEST_F(TensorFile, NotATorchFile) {
  write_file(path("t.pt"), "not a zip archive at all");
  EXPECT_TRUE(contains(error_of([&] { read_tensor_file(path("t.pt")); }),
                       path("t.pt") + ": not a file torch.save writes (PyTorch >= 1.6, zip format): "));
  const std::string m = error_of([&] { read_tensor_file(path("t.pt")); });
  EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  write_file(path("t.pt"), "");
  EXPECT_TRUE(contains(error_of([&] { read_tensor_file(path("t.pt")); }), path("t.pt") + ": empty file"));
  EXPECT_TRUE(contains(error_of([&] { read_tensor_file(path("none.pt")); }), "cannot open " + path("none.pt")));
}

}  // namespace
}  // namespace loom::data
