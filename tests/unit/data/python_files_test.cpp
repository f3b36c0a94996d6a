// Files written by NumPy and PyTorch themselves (/usr/bin/python3), not by our own
// writers: the readers agree with the real formats. Skipped when python3 with numpy and
// torch is not installed.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "data_files.h"
#include "loom/core/error.h"
#include "loom/data/dataset.h"
#include "loom/data/npy_reader.h"
#include "support/temp_path.h"

namespace loom::data {
namespace {

using testing::contains;
using testing::error_of;

constexpr const char* kScript = R"PY(
import sys, numpy as np, torch
d = sys.argv[1]
x = np.arange(60, dtype=np.float32).reshape(20, 3) * 0.5
np.save(d + "/x.npy", x)
np.save(d + "/x64.npy", x.astype(np.float64))
np.save(d + "/xu8.npy", (np.arange(60) * 5 % 256).astype(np.uint8).reshape(20, 3))
np.save(d + "/y.npy", np.arange(20) % 4)
np.save(d + "/yf.npy", np.arange(20, dtype=np.float64) / 4)
for v in (2, 3):
    with open(d + "/x_v%d.npy" % v, "wb") as f:
        np.lib.format.write_array(f, x, version=(v, 0))
np.save(d + "/fortran.npy", np.asfortranarray(x))
np.save(d + "/big.npy", x.astype(">f4"))
np.save(d + "/objects.npy", np.array([1, "a"], dtype=object), allow_pickle=True)
torch.save({"inputs": torch.from_numpy(x), "targets": torch.arange(20) % 4}, d + "/t.pt")
big = torch.arange(200, dtype=torch.float64).reshape(20, 10)
torch.save({"inputs": big[:, 1::3], "targets": big[:, 0] / 10, "note": "a view"}, d + "/view.pt")
)PY";

class PythonFiles : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = loom::test::temp_path("python-files");
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    const std::string script = dir_ + "/make.py";
    testing::write_file(script, kScript);
    const std::string command = "/usr/bin/python3 " + script + " " + dir_ + " > " + dir_ + "/log 2>&1";
    made_ = std::system(command.c_str()) == 0;
  }
  static void TearDownTestSuite() { std::filesystem::remove_all(dir_); }
  void SetUp() override {
    if (!made_) GTEST_SKIP() << "/usr/bin/python3 with numpy and torch could not write the files";
  }

  static std::string path(const std::string& name) { return dir_ + "/" + name; }
  static Dataset load(const std::string& name) {
    DataOptions o;
    o.name = name;
    return load_dataset(o, Split::train);
  }

  static inline std::string dir_;
  static inline bool made_ = false;
};

at::Tensor expected_x() { return at::arange(60, at::kFloat).view({20, 3}).mul_(0.5); }

TEST_F(PythonFiles, NpyOfEachDtype) {
  const Dataset d = load("npy:" + path("x.npy") + "," + path("y.npy"));
  EXPECT_EQ(d.inputs.scalar_type(), at::kFloat);
  EXPECT_TRUE(at::equal(d.inputs, expected_x()));
  EXPECT_EQ(d.targets.scalar_type(), at::kLong);
  EXPECT_TRUE(at::equal(d.targets, at::arange(20, at::kLong).remainder(4)));
  EXPECT_EQ(d.num_classes, 4);
  EXPECT_TRUE(at::equal(slice(load("npy:" + path("x64.npy") + "," + path("y.npy")), 0, 20).inputs, expected_x()));
  const Dataset u8 = load("npy:" + path("xu8.npy") + "," + path("yf.npy"));
  EXPECT_EQ(u8.inputs.scalar_type(), at::kByte);
  EXPECT_TRUE(at::equal(slice(u8, 0, 20).inputs,
                        at::arange(60, at::kLong).mul_(5).remainder_(256).to(at::kFloat).view({20, 3})));
  EXPECT_EQ(u8.targets.scalar_type(), at::kFloat);
  EXPECT_TRUE(at::equal(u8.targets, at::arange(20, at::kFloat).div_(4)));
}

TEST_F(PythonFiles, NpyFormatVersions) {
  EXPECT_TRUE(at::equal(read_npy(path("x_v2.npy")), expected_x()));
  EXPECT_TRUE(at::equal(read_npy(path("x_v3.npy")), expected_x()));
}

TEST_F(PythonFiles, NpyThatWeRefuse) {
  EXPECT_TRUE(contains(error_of([] { read_npy(path("fortran.npy")); }),
                       path("fortran.npy") + ": the array is in Fortran order"));
  EXPECT_TRUE(contains(error_of([] { read_npy(path("big.npy")); }), path("big.npy") + ": big-endian dtype '>f4'"));
  EXPECT_TRUE(contains(error_of([] { read_npy(path("objects.npy")); }), path("objects.npy") + ": object arrays"));
}

TEST_F(PythonFiles, TorchSave) {
  const Dataset d = load("tensors:" + path("t.pt"));
  EXPECT_TRUE(at::equal(d.inputs, expected_x()));
  EXPECT_TRUE(at::equal(d.targets, at::arange(20, at::kLong).remainder(4)));
  EXPECT_EQ(d.num_classes, 4);
}

// A view with a storage offset and strides (torch.save writes the whole storage).
TEST_F(PythonFiles, TorchSaveOfAView) {
  const Dataset d = load("tensors:" + path("view.pt"));
  const at::Tensor big = at::arange(200, at::kDouble).view({20, 10});
  EXPECT_EQ(d.sample_shape, (std::vector<int64_t>{3}));
  EXPECT_TRUE(at::equal(slice(d, 0, 20).inputs, big.slice(1, 1, 10, 3).to(at::kFloat)));
  EXPECT_EQ(d.targets.scalar_type(), at::kFloat);
  EXPECT_TRUE(at::equal(d.targets, big.select(1, 0).div(10).to(at::kFloat)));
}

}  // namespace
}  // namespace loom::data
