#include "loom/models/scripted.h"

#include <torch/script.h>
#include <torch/torch.h>

#include <fmt/ranges.h>

#include <map>
#include <sstream>

#include "loom/core/atomic_file.h"
#include "loom/core/error.h"

namespace loom::models {

namespace {

// A torch::nn::Module view of one script module: its direct parameters and buffers are
// registered under their own names (the same tensors), each child script module becomes
// a child ScriptedModuleImpl, and forward() runs the script's own forward.
// The last non-empty line of an error from the TorchScript interpreter: the cause
// ("RuntimeError: mat1 and mat2 shapes cannot be multiplied (64x8 and 20x64)"), without
// the script's traceback above it.
std::string cause_of(const std::exception& e) {
  const auto* c10_error = dynamic_cast<const c10::Error*>(&e);
  std::string text = c10_error ? c10_error->what_without_backtrace() : e.what();
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text.substr(text.rfind('\n') + 1);
}

class ScriptedModuleImpl : public torch::nn::Module {
 public:
  // `label` names the module in errors: the file, and the layer when it is one.
  ScriptedModuleImpl(torch::jit::Module script, std::string label)
      : script_(std::move(script)), label_(std::move(label)) {
    for (const auto& p : script_.named_parameters(/*recurse=*/false)) register_parameter(p.name, p.value, true);
    for (const auto& b : script_.named_buffers(/*recurse=*/false)) register_buffer(b.name, b.value);
    for (const auto& c : script_.named_children()) {
      register_module(c.name, std::make_shared<ScriptedModuleImpl>(c.value, label_ + ", module '" + c.name + "'"));
    }
    torch::nn::Module::train(script_.is_training());
  }

  // One tensor in, one out. An error inside the script becomes one line naming the
  // module, the input's shape and the cause.
  at::Tensor forward(const at::Tensor& input) {
    c10::IValue out;
    try {
      out = script_.forward({input});
    } catch (const std::exception& e) {
      LOOM_THROW(ModelError, "{}: forward failed on an input of shape {}: {}", label_, fmt::join(input.sizes(), "x"),
                 cause_of(e));
    }
    LOOM_CHECK(out.isTensor(), ModelError, "{}: forward returned a {}, not a tensor", label_, out.tagKind());
    return out.toTensor();
  }

  void train(bool on = true) override {
    torch::nn::Module::train(on);
    script_.train(on);
  }

 private:
  torch::jit::Module script_;
  std::string label_;
};
TORCH_MODULE(ScriptedModule);

// A module that is not an nn.Sequential, as a Sequential of one layer that runs it
// whole. The layer is taken out of the registered children so that the names are the
// script module's own ("fc.weight", not "0.fc.weight"): its parameters, buffers and
// children are registered here instead (the same modules and tensors).
class ScriptedWholeImpl : public torch::nn::SequentialImpl {
 public:
  ScriptedWholeImpl(const torch::jit::Module& script, const std::string& label)
      : whole_(std::make_shared<ScriptedModuleImpl>(script, label)) {
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
  // torch.jit.script mangles the name of a second, differently shaped Sequential of
  // one Python session: "__torch__.torch.nn.modules.container.___torch_mangle_3.Sequential".
  const std::string prefix = "__torch__.torch.nn.modules.container.";
  out.sequential = out.type_name.rfind(prefix, 0) == 0 && out.type_name.size() >= 11 &&
                   out.type_name.compare(out.type_name.size() - 11, 11, ".Sequential") == 0;
  if (out.sequential) {
    out.model = torch::nn::Sequential();
    for (const auto& c : script->named_children()) {
      out.model->push_back(std::string(c.name),
                           ScriptedModule(c.value, "--model " + path + ", layer '" + c.name + "'"));
    }
  } else {
    const std::shared_ptr<torch::nn::SequentialImpl> whole =
        std::make_shared<ScriptedWholeImpl>(*script, "--model " + path);
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
