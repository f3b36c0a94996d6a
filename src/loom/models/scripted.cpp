#include "loom/models/scripted.h"

#include <torch/script.h>
#include <torch/torch.h>

#include <map>
#include <sstream>

#include "loom/core/atomic_file.h"
#include "loom/core/error.h"

namespace loom::models {

namespace {

// A torch::nn::Module view of one script module: its direct parameters and buffers are
// registered under their own names (the same tensors), each child script module becomes
// a child ScriptedModuleImpl, and forward() runs the script's own forward.
class ScriptedModuleImpl : public torch::nn::Module {
 public:
  explicit ScriptedModuleImpl(torch::jit::Module script) : script_(std::move(script)) {
    for (const auto& p : script_.named_parameters(/*recurse=*/false)) register_parameter(p.name, p.value, true);
    for (const auto& b : script_.named_buffers(/*recurse=*/false)) register_buffer(b.name, b.value);
    for (const auto& c : script_.named_children())
      register_module(c.name, std::make_shared<ScriptedModuleImpl>(c.value));
    torch::nn::Module::train(script_.is_training());
  }

  at::Tensor forward(const at::Tensor& input) {
    const c10::IValue out = script_.forward({input});
    LOOM_CHECK(out.isTensor(), ModelError, "the TorchScript module's forward returned a {}, not a tensor",
               out.tagKind());
    return out.toTensor();
  }

  void train(bool on = true) override {
    torch::nn::Module::train(on);
    script_.train(on);
  }

 private:
  torch::jit::Module script_;
};
TORCH_MODULE(ScriptedModule);

// A module that is not an nn.Sequential, as a Sequential of one layer that runs it
// whole. The layer is taken out of the registered children so that the names are the
// script module's own ("fc.weight", not "0.fc.weight"): its parameters, buffers and
// children are registered here instead (the same modules and tensors).
class ScriptedWholeImpl : public torch::nn::SequentialImpl {
 public:
  explicit ScriptedWholeImpl(const torch::jit::Module& script) : whole_(std::make_shared<ScriptedModuleImpl>(script)) {
    push_back("whole", whole_);
    unregister_module("whole");
    for (const auto& p : whole_->named_parameters(/*recurse=*/false)) register_parameter(p.key(), p.value(), true);
    for (const auto& b : whole_->named_buffers(/*recurse=*/false)) register_buffer(b.key(), b.value());
    for (const auto& c : whole_->named_children()) register_module(c.key(), c.value());
  }

  void train(bool on = true) override {
    torch::nn::SequentialImpl::train(on);
    whole_->train(on);
  }

 private:
  std::shared_ptr<ScriptedModuleImpl> whole_;
};

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

}  // namespace

bool is_model_file(const std::string& name) {
  return ends_with(name, ".pt") || ends_with(name, ".pth") || ends_with(name, ".ts") ||
         name.find('/') != std::string::npos;
}

ScriptedModel load_scripted(const std::string& path) {
  std::string bytes;
  try {
    bytes = read_file(path);
  } catch (const DataError& e) {
    LOOM_THROW(ModelError, "--model {}", e.what());
  }
  auto script = std::make_shared<torch::jit::Module>();
  try {
    std::istringstream in(bytes);
    *script = torch::jit::load(in);
  } catch (const std::exception& e) {
    LOOM_THROW(ModelError,
               "--model {}: not a TorchScript module ({}); save one from Python with "
               "torch.jit.script(model).save(path)",
               path, first_line(e.what()));
  }
  ScriptedModel out;
  out.script = script;
  out.type_name = script->type()->name() ? script->type()->name()->qualifiedName() : "?";
  out.sequential = out.type_name == "__torch__.torch.nn.modules.container.Sequential";
  if (out.sequential) {
    out.model = torch::nn::Sequential();
    for (const auto& c : script->named_children()) out.model->push_back(std::string(c.name), ScriptedModule(c.value));
  } else {
    const std::shared_ptr<torch::nn::SequentialImpl> whole = std::make_shared<ScriptedWholeImpl>(*script);
    out.model = torch::nn::Sequential(whole);
  }
  LOOM_CHECK(!out.model->parameters().empty(), ModelError, "--model {}: the TorchScript module has no parameters",
             path);
  out.model->train();
  return out;
}

void save_scripted(const ScriptedModel& scripted, const std::vector<std::pair<std::string, at::Tensor>>& state,
                   const std::string& path) {
  LOOM_CHECK(scripted.script, ModelError, "--save-scripted {}: the model is not a TorchScript module", path);
  std::map<std::string, at::Tensor> given(state.begin(), state.end());
  torch::jit::Module copy = scripted.script->clone();
  {
    torch::NoGradGuard no_grad;
    auto take = [&](const std::string& name, at::Tensor target) {
      const auto it = given.find(name);
      LOOM_CHECK(it != given.end(), ModelError, "--save-scripted {}: the trained model has no tensor '{}'", path, name);
      target.copy_(it->second);
      given.erase(it);
    };
    for (const auto& p : copy.named_parameters(/*recurse=*/true)) take(p.name, p.value);
    for (const auto& b : copy.named_buffers(/*recurse=*/true)) take(b.name, b.value);
  }
  LOOM_CHECK(given.empty(), ModelError, "--save-scripted {}: the module has no tensor '{}'", path,
             given.empty() ? "" : given.begin()->first);
  std::ostringstream out;
  copy.save(out);
  write_file_atomic(path, out.str());
}

}  // namespace loom::models
