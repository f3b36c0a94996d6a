#include "loom/train/model_io.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "loom/core/error.h"
#include "loom/models/registry.h"
#include "support/temp_path.h"

namespace {

using namespace loom::train;

std::string temp(const std::string& name) { return loom::test::temp_path(name); }

TEST(ModelIo, StateDictHasParametersThenBuffers) {
  auto m = torch::nn::Sequential(torch::nn::Linear(3, 2), torch::nn::BatchNorm1d(2));
  std::vector<std::string> keys;
  for (const auto& [k, v] : state_dict(*m)) keys.push_back(k);
  EXPECT_EQ(keys, (std::vector<std::string>{"0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean",
                                            "1.running_var", "1.num_batches_tracked"}));
}

TEST(ModelIo, SaveLoadRoundTrip) {
  loom::models::ModelOptions o;
  o.seed = 1;
  auto a = loom::models::make_model("cnn", o);
  o.seed = 2;
  auto b = loom::models::make_model("cnn", o);
  const auto path = temp("roundtrip.pt");
  save_model_file(path, state_dict(*a));
  load_state_dict(*b, load_model_file(path), path);
  for (size_t i = 0; i < a->parameters().size(); ++i) EXPECT_TRUE(a->parameters()[i].equal(b->parameters()[i]));
}

// The file is streamed (not built in memory as torch::pickle_save does) but is byte for
// byte what torch::pickle_save makes of the same dict.
TEST(ModelIo, StreamedFileIsWhatPickleSaveWrites) {
  auto m = loom::models::make_model("cnn", {});
  const auto path = temp("streamed.pt");
  save_model_file(path, state_dict(*m));
  c10::Dict<std::string, at::Tensor> dict;
  for (const auto& [k, v] : state_dict(*m)) dict.insert(k, v.detach().contiguous());
  const std::vector<char> expected = torch::pickle_save(dict);
  std::ifstream in(path, std::ios::binary);
  const std::string got((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_EQ(got.size(), expected.size());
  EXPECT_TRUE(std::equal(got.begin(), got.end(), expected.begin()));
}

// A write error (here: the disk is /dev/full's) is one named error after the zip writer
// is done, not an abort inside libtorch, and leaves no file behind.
TEST(ModelIo, WriteErrorsAreNamedAndLeaveNothing) {
  const auto dir = temp("full_dir");
  std::filesystem::create_directories(dir);
  const auto path = dir + "/m.pt";
  std::filesystem::create_symlink("/dev/full", path + ".tmp." + std::to_string(::getpid()));
  try {
    save_model_file(path, state_dict(*loom::models::make_model("mlp", {})));
    FAIL() << "no error";
  } catch (const loom::Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot write " + path + ": No space left on device"), std::string::npos)
        << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(ModelIo, MismatchesNameTheTensor) {
  loom::models::ModelOptions wide, narrow;
  wide.width = 64;
  wide.depth = 3;
  narrow.width = 32;
  narrow.depth = 3;
  const auto path = temp("wide.pt");
  save_model_file(path, state_dict(*loom::models::make_model("deep-mlp", wide)));
  auto model = loom::models::make_model("deep-mlp", narrow);
  try {
    load_state_dict(*model, load_model_file(path), path);
    FAIL();
  } catch (const loom::ModelError& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("'1.weight' has shape 64x784 but the model needs 32x784"), std::string::npos)
        << e.what();
  }
  // A file of another model altogether: the first missing tensor is named.
  save_model_file(path, state_dict(*loom::models::make_model("mlp", {})));
  auto cnn = loom::models::make_model("cnn", {});
  try {
    load_state_dict(*cnn, load_model_file(path), path);
    FAIL();
  } catch (const loom::ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("missing tensor '0.weight'"), std::string::npos) << e.what();
  }
}

TEST(ModelIo, CorruptAndMissingFiles) {
  EXPECT_THROW(load_model_file(temp("does-not-exist.pt")), loom::CheckpointError);
  const auto path = temp("garbage.pt");
  std::ofstream(path) << "this is not a model";
  try {
    load_model_file(path);
    FAIL();
  } catch (const loom::CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

// The model-file contract: Python's torch.load returns the same dict.
TEST(ModelIo, PythonTorchLoadReadsTheFile) {
  auto m = loom::models::make_model("mlp", {});
  const auto path = temp("for_python.pt");
  save_model_file(path, state_dict(*m));
  const auto script = temp("check.py");
  std::ofstream(script) << "import sys, torch\n"
                           "d = torch.load(sys.argv[1])\n"
                           "assert isinstance(d, dict), type(d)\n"
                           "print(','.join(d.keys()))\n"
                           "print(repr(float(d['1.weight'].double().sum())), repr(float(d['5.bias'][3])))\n";
  const std::string cmd = "/usr/bin/python3 " + script + " " + path + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[512];
  while (fgets(buf, sizeof buf, p)) out += buf;
  ASSERT_EQ(pclose(p), 0) << out;
  const auto nl = out.find('\n');
  EXPECT_EQ(out.substr(0, nl), "1.weight,1.bias,3.weight,3.bias,5.weight,5.bias");
  const double sum = m->parameters()[0].to(torch::kDouble).sum().item<double>();
  const double bias = m->parameters()[5][3].item<double>();
  double py_sum = 0, py_bias = 0;
  ASSERT_EQ(std::sscanf(out.c_str() + nl + 1, "%lf %lf", &py_sum, &py_bias), 2) << out;
  EXPECT_NEAR(py_sum, sum, 1e-9);
  EXPECT_EQ(py_bias, bias);
}

}  // namespace
