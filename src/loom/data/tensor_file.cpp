#include "loom/data/tensor_file.h"

#include <ATen/ATen.h>
#include <fmt/ranges.h>
#include <torch/csrc/jit/serialization/pickle.h>

#include <optional>
#include <vector>

#include "loom/core/error.h"
#include "loom/data/mapped_file.h"

namespace loom::data {

namespace {

// The first line of a c10::Error, without its C++ backtrace.
std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

}  // namespace

TensorPair read_tensor_file(const std::string& path) {
  std::vector<char> bytes;
  {
    const auto file = MappedFile::open(path);
    LOOM_CHECK(file->size() > 0, DataError, "{}: empty file (expected a torch.save file)", path);
    bytes.assign(file->data(), file->data() + file->size());
  }
  c10::IValue value;
  try {
    value = torch::jit::pickle_load(bytes);
  } catch (const c10::Error& e) {
    LOOM_THROW(DataError, "{}: not a file torch.save writes (PyTorch >= 1.6, zip format): {}", path,
               first_line(e.what_without_backtrace()));
  } catch (const std::exception& e) {
    LOOM_THROW(DataError, "{}: not a file torch.save writes (PyTorch >= 1.6, zip format): {}", path,
               first_line(e.what()));
  }
  LOOM_CHECK(value.isGenericDict(), DataError, "{}: holds a {}, not a dict {{\"inputs\": tensor, \"targets\": tensor}}",
             path, value.tagKind());
  const c10::impl::GenericDict dict = value.toGenericDict();
  std::vector<std::string> keys;
  std::optional<c10::IValue> found[2];
  const char* names[2] = {"inputs", "targets"};
  for (const auto& entry : dict) {
    const c10::IValue& key = entry.key();
    keys.push_back(key.isString() ? key.toStringRef() : fmt::format("<{}>", key.tagKind()));
    for (int k = 0; k < 2; ++k) {
      if (key.isString() && key.toStringRef() == names[k]) found[k] = entry.value();
    }
  }
  for (int k = 0; k < 2; ++k) {
    LOOM_CHECK(found[k].has_value(), DataError, "{}: the dict has no key '{}' (keys: {})", path, names[k],
               fmt::join(keys, ", "));
    LOOM_CHECK(found[k]->isTensor(), DataError, "{}: '{}' holds a {}, not a tensor", path, names[k],
               found[k]->tagKind());
  }
  TensorPair pair{found[0]->toTensor(), found[1]->toTensor()};
  LOOM_CHECK(pair.inputs.device().is_cpu() && pair.targets.device().is_cpu(), DataError,
             "{}: the tensors must be on the CPU (save x.cpu())", path);
  return pair;
}

}  // namespace loom::data
