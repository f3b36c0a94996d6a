// TorchScript modules as loom models (models/scripted.h). The modules are built here
// with torch::jit::Module::define (the TorchScript a Python user's torch.jit.script
// produces), saved, and loaded as a user's file would be; Python-made files are
// covered by the integration tests (tests/integration/byo).
#include "loom/models/scripted.h"

#include <gtest/gtest.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "loom/core/error.h"
#include "loom/train/model_io.h"

namespace {

namespace fs = std::filesystem;
using loom::models::load_scripted;

struct TempDir {
  fs::path path = fs::temp_directory_path() / ("loom-scripted-" + std::to_string(::getpid()));
  TempDir() { fs::create_directories(path); }
  ~TempDir() { fs::remove_all(path); }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

// A module as torch.jit.script makes one: with a `training` attribute.
torch::jit::Module module(const std::string& type) {
  torch::jit::Module m(type);
  m.register_attribute("training", c10::BoolType::get(), true);
  return m;
}

torch::jit::Module linear(const std::string& type, int64_t in, int64_t out) {
  torch::jit::Module m = module(type);
  m.register_parameter("weight", torch::randn({out, in}), false);
  m.register_parameter("bias", torch::randn({out}), false);
  m.define("def forward(self, x):\n  return torch.addmm(self.bias, x, self.weight.t())\n");
  return m;
}

// Not a Sequential: a residual block with a nested child, a buffer, a parameter of its
// own, and a forward that depends on self.training.
torch::jit::Module residual() {
  torch::jit::Module block = module("__torch__.Block");
  block.register_module("fc", linear("__torch__.Fc", 4, 4));
  block.define("def forward(self, x):\n  return x + torch.relu(self.fc.forward(x))\n");
  torch::jit::Module m = module("__torch__.ResMlp");
  m.register_parameter("scale", torch::ones({3}), false);
  m.register_buffer("shift", torch::full({3}, 0.5));
  m.register_module("inp", linear("__torch__.Inp", 6, 4));
  m.register_module("block", block);
  m.register_module("out", linear("__torch__.Out", 4, 3));
  m.define(
      "def forward(self, x):\n"
      "  y = self.out.forward(self.block.forward(self.inp.forward(x))) * self.scale + self.shift\n"
      "  if self.training:\n"
      "    y = y + 100.0\n"
      "  return y\n");
  return m;
}

torch::jit::Module sequential() {
  torch::jit::Module relu = module("__torch__.torch.nn.modules.activation.ReLU");
  relu.define("def forward(self, x):\n  return torch.relu(x)\n");
  torch::jit::Module m = module("__torch__.torch.nn.modules.container.Sequential");
  m.register_module("0", linear("__torch__.L0", 6, 8));
  m.register_module("1", relu);
  m.register_module("2", linear("__torch__.L2", 8, 3));
  m.define(
      "def forward(self, x):\n  return getattr(self, '2').forward(getattr(self, '1').forward(getattr(self, "
      "'0').forward(x)))\n");
  return m;
}

std::vector<std::string> names_of(const loom::train::StateDict& state) {
  std::vector<std::string> out;
  for (const auto& [name, _] : state) out.push_back(name);
  return out;
}

TEST(Scripted, ModelFilesAreToldFromBuiltInNames) {
  EXPECT_TRUE(loom::models::is_model_file("net.pt"));
  EXPECT_TRUE(loom::models::is_model_file("dir/net"));
  EXPECT_FALSE(loom::models::is_model_file("cnn"));
  EXPECT_FALSE(loom::models::is_model_file("deep-mlp"));
}

TEST(Scripted, AModuleKeepsItsOwnNamesAndSharesItsTensors) {
  TempDir dir;
  residual().save(dir.file("res.pt"));
  const auto scripted = load_scripted(dir.file("res.pt"));
  EXPECT_FALSE(scripted.sequential);
  EXPECT_EQ(scripted.type_name, "__torch__.ResMlp");
  const auto state = loom::train::state_dict(*scripted.model);
  EXPECT_EQ(names_of(state), (std::vector<std::string>{"scale", "inp.weight", "inp.bias", "block.fc.weight",
                                                       "block.fc.bias", "out.weight", "out.bias", "shift"}));
  // The same tensors as the script module's, not copies.
  std::map<std::string, at::Tensor> script_tensors;
  for (const auto& p : scripted.script->named_parameters(true)) script_tensors[p.name] = p.value;
  for (const auto& b : scripted.script->named_buffers(true)) script_tensors[b.name] = b.value;
  for (const auto& [name, tensor] : state) {
    ASSERT_TRUE(script_tensors.count(name)) << name;
    EXPECT_TRUE(tensor.is_same(script_tensors[name])) << name;
  }
  for (const auto& p : scripted.model->parameters()) EXPECT_TRUE(p.requires_grad());
}

TEST(Scripted, ForwardRunsTheScriptAndGradientsReachItsParameters) {
  TempDir dir;
  residual().save(dir.file("res.pt"));
  auto scripted = load_scripted(dir.file("res.pt"));
  const auto x = torch::randn({5, 6});
  const auto y = scripted.model->forward(x);
  const auto expected = scripted.script->forward({x}).toTensor();
  EXPECT_TRUE(torch::equal(y, expected));
  y.pow(2).sum().backward();
  for (const auto& p : scripted.script->named_parameters(true)) {
    ASSERT_TRUE(p.value.grad().defined()) << p.name;
    EXPECT_GT(p.value.grad().abs().sum().item<double>(), 0) << p.name;
  }
}

TEST(Scripted, AFailingForwardIsOneLineNamingTheFileShapeAndCause) {
  TempDir dir;
  residual().save(dir.file("res.pt"));
  sequential().save(dir.file("seq.pt"));
  for (const auto& [file, where] : std::vector<std::pair<std::string, std::string>>{
           {dir.file("res.pt"), "--model " + dir.file("res.pt") + ": forward failed on an input of shape 5x8: "},
           {dir.file("seq.pt"),
            "--model " + dir.file("seq.pt") + ", layer '0': forward failed on an input of shape 5x8: "}}) {
    auto scripted = load_scripted(file);
    try {
      scripted.model->forward(torch::randn({5, 8}));  // the models take 6 inputs
      FAIL() << file;
    } catch (const loom::ModelError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(where), std::string::npos) << what;
      EXPECT_NE(what.find("shapes cannot be multiplied"), std::string::npos) << what;  // the interpreter's cause
      EXPECT_EQ(what.find('\n'), std::string::npos) << what;
    }
  }
}

TEST(Scripted, TrainAndEvalReachTheScript) {
  TempDir dir;
  residual().save(dir.file("res.pt"));
  auto scripted = load_scripted(dir.file("res.pt"));
  const auto x = torch::randn({2, 6});
  torch::NoGradGuard no_grad;
  const auto training = scripted.model->forward(x);
  scripted.model->eval();
  EXPECT_FALSE(scripted.script->is_training());
  const auto evaluating = scripted.model->forward(x);
  EXPECT_NEAR((training - evaluating).mean().item<double>(), 100.0, 1e-4);
  scripted.model->train();
  EXPECT_TRUE(scripted.script->is_training());
}

TEST(Scripted, ASequentialBecomesItsChildren) {
  TempDir dir;
  sequential().save(dir.file("seq.pt"));
  auto scripted = load_scripted(dir.file("seq.pt"));
  EXPECT_TRUE(scripted.sequential);
  ASSERT_EQ(scripted.model->size(), 3u);
  EXPECT_EQ(names_of(loom::train::state_dict(*scripted.model)),
            (std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias"}));
  const auto x = torch::randn({4, 6});
  EXPECT_TRUE(torch::allclose(scripted.model->forward(x), scripted.script->forward({x}).toTensor()));
  // Each layer runs alone (a pipeline stage holds some of them).
  const auto h = scripted.model->ptr(0)->as<torch::nn::Module>();
  EXPECT_NE(h, nullptr);
}

TEST(Scripted, SavedModulesCarryTheTrainedState) {
  TempDir dir;
  residual().save(dir.file("res.pt"));
  auto scripted = load_scripted(dir.file("res.pt"));
  auto state = loom::train::state_dict(*scripted.model);
  for (auto& [name, tensor] : state) tensor = tensor.detach() * 0 + 0.25;  // "trained" values
  loom::models::save_scripted(scripted, state, dir.file("out.pt"));
  auto reloaded = torch::jit::load(dir.file("out.pt"));
  for (const auto& p : reloaded.named_parameters(true)) {
    EXPECT_TRUE(torch::allclose(p.value, torch::full_like(p.value, 0.25))) << p.name;
  }
  // The loaded model itself is unchanged.
  EXPECT_FALSE(torch::allclose(scripted.script->attr("scale").toTensor(), torch::full({3}, 0.25)));
  state.pop_back();
  try {
    loom::models::save_scripted(scripted, state, dir.file("bad.pt"));
    FAIL() << "expected a ModelError";
  } catch (const loom::ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("shift"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(dir.file("bad.pt")));
}

TEST(Scripted, FilesThatAreNotModulesAreOneClearError) {
  TempDir dir;
  { std::ofstream(dir.file("junk.pt")) << "not a zip archive"; }
  loom::train::save_model_file(dir.file("state.pt"), {{"w", torch::ones({2})}});
  for (const auto& [file, cause] :
       std::vector<std::pair<std::string, std::string>>{{dir.file("missing.pt"), "missing.pt"},
                                                        {dir.file("junk.pt"), "not a TorchScript module"},
                                                        {dir.file("state.pt"), "not a TorchScript module"}}) {
    try {
      load_scripted(file);
      FAIL() << file;
    } catch (const loom::ModelError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(file), std::string::npos) << what;
      EXPECT_NE(what.find(cause), std::string::npos) << what;
      EXPECT_EQ(what.find('\n'), std::string::npos) << what;
    }
  }
}

}  // namespace
