#include "loom/train/model_io.h"

#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/jit/serialization/export.h>
#include <torch/csrc/jit/serialization/pickler.h>
#include <torch/torch.h>

#include <fmt/format.h>

#include <map>

#include "loom/core/atomic_file.h"
#include "loom/core/error.h"

namespace loom::train {

StateDict state_dict(const torch::nn::Module& module) {
  StateDict out;
  for (const auto& p : module.named_parameters(/*recurse=*/true)) out.emplace_back(p.key(), p.value());
  for (const auto& b : module.named_buffers(/*recurse=*/true)) out.emplace_back(b.key(), b.value());
  return out;
}

void load_state_dict(torch::nn::Module& module, const StateDict& state, const std::string& source) {
  std::map<std::string, at::Tensor> given(state.begin(), state.end());
  torch::NoGradGuard no_grad;
  for (auto& [name, target] : state_dict(module)) {
    const auto it = given.find(name);
    LOOM_CHECK(it != given.end(), ModelError, "{}: missing tensor '{}' (is it from another model?)", source, name);
    const at::Tensor& value = it->second;
    LOOM_CHECK(value.sizes() == target.sizes(), ModelError, "{}: tensor '{}' has shape {} but the model needs {}",
               source, name, fmt::join(value.sizes(), "x"), fmt::join(target.sizes(), "x"));
    LOOM_CHECK(value.scalar_type() == target.scalar_type(), ModelError,
               "{}: tensor '{}' has dtype {} but the model needs {}", source, name, c10::toString(value.scalar_type()),
               c10::toString(target.scalar_type()));
    target.copy_(value);
    given.erase(it);
  }
  LOOM_CHECK(given.empty(), ModelError, "{}: unexpected tensor '{}' (is it from another model?)", source,
             given.empty() ? "" : given.begin()->first);
}

void save_model_file(const std::string& path, const StateDict& state) {
  c10::Dict<std::string, at::Tensor> dict;
  for (const auto& [name, tensor] : state) dict.insert(name, tensor.detach().contiguous());
  // torch::pickle_save's format (a zip of the pickled dict and one record per tensor,
  // what Python's torch.load reads), streamed to the file: pickle_save builds the whole
  // file in a growing vector, twice the model at its peak, which is what fails first
  // when memory is tight. Only the small pickle program is held in memory here.
  std::vector<char> program;
  torch::jit::Pickler pickler([&](const char* bytes, size_t n) { program.insert(program.end(), bytes, bytes + n); });
  pickler.protocol();
  pickler.pushIValue(dict);
  pickler.stop();
  write_file_atomic(path, [&](const ByteSink& write) {
    caffe2::serialize::PyTorchStreamWriter zip([&](const void* bytes, size_t n) {
      write(std::string_view(static_cast<const char*>(bytes), n));
      return n;  // errors surface from write_file_atomic, after the zip is complete
    });
    torch::jit::writeArchiveAndTensors("data", program.data(), program.size(), pickler.tensorData(), zip);
    zip.writeEndOfFile();
  });
}

std::string describe_nonfinite(const StateDict& state) {
  for (const auto& [name, tensor] : state) {
    if (!tensor.is_floating_point() || tensor.numel() == 0) continue;
    const int64_t bad = tensor.detach().isfinite().logical_not().sum().item<int64_t>();
    if (bad > 0) {
      return fmt::format("'{}' holds {} NaN or infinite value{} of {}", name, bad, bad == 1 ? "" : "s", tensor.numel());
    }
  }
  return "";
}

StateDict load_model_file(const std::string& path) {
  std::string bytes;
  try {
    bytes = read_file(path);
  } catch (const DataError& e) {
    LOOM_THROW(CheckpointError, "{}", e.what());
  }
  c10::IValue value;
  try {
    value = torch::pickle_load(std::vector<char>(bytes.begin(), bytes.end()));
  } catch (const std::exception& e) {
    std::string cause = e.what();
    // libtorch's unpickler reads a collections.OrderedDict as None, then fails on its items.
    LOOM_CHECK(cause.find("Expected GenericDict but got None") == std::string::npos, CheckpointError,
               "{}: a Python OrderedDict (torch.save(model.state_dict())), which libtorch cannot read; save "
               "torch.save(dict(model.state_dict()), path) instead",
               path);
    LOOM_THROW(CheckpointError, "{}: not a readable model file ({})", path, cause.substr(0, cause.find('\n')));
  }
  LOOM_CHECK(value.isGenericDict(), CheckpointError, "{}: not a model file (expected a dict of tensors, found {})",
             path, value.tagKind());
  StateDict out;
  for (const auto& item : value.toGenericDict()) {
    LOOM_CHECK(item.key().isString() && item.value().isTensor(), CheckpointError,
               "{}: not a model file (entries must be name -> tensor)", path);
    out.emplace_back(item.key().toStringRef(), item.value().toTensor());
  }
  return out;
}

}  // namespace loom::train
