#include "loom/train/checkpoint.h"

#include <torch/torch.h>

#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "loom/core/atomic_file.h"
#include "loom/core/checked_file.h"
#include "loom/core/error.h"

namespace loom::train {

namespace fs = std::filesystem;

namespace {

// A training checkpoint part: a torch pickle of its dict, framed (core/checked_file.h).
constexpr CheckedFormat kFormat{"LOOMCKPT", "loom checkpoint", "checkpoint"};

nlohmann::json to_json(const CheckpointMeta& m) {
  return {{"step", m.step},
          {"rank", m.rank},
          {"world_size", m.world_size},
          {"replicated", m.replicated},
          {"rank0_alone", m.rank0_alone},
          {"reshardable", m.reshardable},
          {"strategy", m.strategy},
          {"model", m.model},
          {"data", m.data},
          {"optimizer", m.optimizer},
          {"partition", m.partition},
          {"layout", m.layout},
          {"width", m.width},
          {"depth", m.depth},
          {"batch_size", m.batch_size},
          {"seed", m.seed},
          {"dp", m.dp},
          {"pp", m.pp},
          {"weights", m.weights}};
}

CheckpointMeta from_json(const nlohmann::json& j) {
  CheckpointMeta m;
  m.step = j.at("step");
  m.rank = j.at("rank");
  m.world_size = j.at("world_size");
  m.replicated = j.at("replicated");
  m.rank0_alone = j.at("rank0_alone");
  m.reshardable = j.value("reshardable", false);  // absent in parts written before ZeRO
  m.strategy = j.at("strategy");
  m.model = j.at("model");
  m.data = j.at("data");
  m.optimizer = j.at("optimizer");
  m.partition = j.at("partition");
  m.layout = j.at("layout");
  m.width = j.at("width");
  m.depth = j.at("depth");
  m.batch_size = j.at("batch_size");
  m.seed = j.at("seed");
  m.dp = j.at("dp");
  m.pp = j.at("pp");
  m.weights = j.at("weights").get<std::vector<double>>();
  return m;
}

at::Tensor bytes_tensor(const std::string& bytes) {
  auto t = torch::empty({static_cast<int64_t>(bytes.size())}, torch::kUInt8);
  if (!bytes.empty()) std::memcpy(t.data_ptr(), bytes.data(), bytes.size());
  return t;
}

// Removes `dir` and the files in it while other ranks may be removing their own parts of
// it: a file gone before we reach it is not an error. (std::filesystem::remove_all stops
// at the first such file, and left a whole old checkpoint behind.) A checkpoint directory
// holds only files; a second pass picks up anything a slow listing missed.
void remove_parts_and_directory(const fs::path& dir) {
  for (int pass = 0; pass < 2; ++pass) {
    std::error_code ec;
    fs::directory_iterator it(dir, ec);
    for (const fs::directory_iterator end; !ec && it != end; it.increment(ec)) {
      std::error_code ignored;
      fs::remove(it->path(), ignored);
    }
    if (fs::remove(dir, ec) || !fs::exists(dir, ec)) return;
  }
}

}  // namespace

void write_checkpoint_part(const std::string& path, const CheckpointPart& part) {
  c10::Dict<std::string, at::Tensor> model;
  for (const auto& [name, tensor] : part.model) model.insert(name, tensor.detach().contiguous());
  c10::impl::GenericDict dict(c10::StringType::get(), c10::AnyType::get());
  dict.insert("meta", to_json(part.meta).dump());
  dict.insert("model", model);
  dict.insert("optimizer", bytes_tensor(part.optimizer));
  dict.insert("rng", part.rng.defined() ? part.rng.contiguous() : torch::empty({0}, torch::kUInt8));
  const std::vector<char> payload = torch::pickle_save(dict);
  write_checked_file(path, kFormat, std::string_view(payload.data(), payload.size()));
}

CheckpointPart read_checkpoint_part(const std::string& path) {
  const std::string body = read_checked_file(path, kFormat);
  CheckpointPart part;
  part.source = path;
  try {
    const c10::IValue value = torch::pickle_load(std::vector<char>(body.begin(), body.end()));
    const auto dict = value.toGenericDict();
    part.meta = from_json(nlohmann::json::parse(dict.at("meta").toStringRef()));
    for (const auto& item : dict.at("model").toGenericDict()) {
      part.model.emplace_back(item.key().toStringRef(), item.value().toTensor());
    }
    const at::Tensor opt = dict.at("optimizer").toTensor();
    part.optimizer.assign(static_cast<const char*>(opt.data_ptr()), opt.numel());
    part.rng = dict.at("rng").toTensor();
  } catch (const std::exception& e) {
    const std::string cause = e.what();
    LOOM_THROW(CheckpointError, "{}: unreadable checkpoint contents ({})", path, cause.substr(0, cause.find('\n')));
  }
  return part;
}

std::string CheckpointDir::step_dir(int64_t step) const { return fmt::format("{}/step-{:08d}", dir_, step); }

std::string CheckpointDir::part_path(int64_t step, int rank) const {
  return fmt::format("{}/rank-{:05d}.ckpt", step_dir(step), rank);
}

void CheckpointDir::prepare(int64_t step) const {
  std::error_code ec;
  fs::create_directories(step_dir(step), ec);
  LOOM_CHECK(!ec && fs::is_directory(step_dir(step)), CheckpointError, "--checkpoint-dir: cannot create {}: {}",
             step_dir(step), ec ? ec.message() : "not a directory");
}

void CheckpointDir::mark_complete(int64_t step, int world_size) const {
  write_file_atomic(step_dir(step) + "/COMPLETE", fmt::format("{{\"step\":{},\"world_size\":{}}}\n", step, world_size));
}

std::optional<int64_t> CheckpointDir::newest_complete() const {
  std::optional<int64_t> newest;
  std::error_code ec;
  if (!fs::is_directory(dir_, ec)) return newest;
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("step-", 0) != 0 || name.size() <= 5) continue;
    if (name.find_first_not_of("0123456789", 5) != std::string::npos) continue;
    if (!fs::exists(entry.path() / "COMPLETE")) continue;
    const int64_t step = std::stoll(name.substr(5));
    if (!newest || step > *newest) newest = step;
  }
  return newest;
}

void CheckpointDir::remove_older_than(int64_t step, int rank) const {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("step-", 0) != 0 || name.find_first_not_of("0123456789", 5) != std::string::npos) continue;
    if (name.size() <= 5 || std::stoll(name.substr(5)) >= step) continue;
    std::error_code ignored;  // another rank may be removing the same directory
    if (rank == 0) {
      fs::remove(entry.path() / "COMPLETE", ignored);  // first: it stops counting
      remove_parts_and_directory(entry.path());
    } else {
      fs::remove(fmt::format("{}/rank-{:05d}.ckpt", entry.path().string(), rank), ignored);
      fs::remove(entry.path(), ignored);  // only when empty
    }
  }
}

std::string checkpoint_mismatch(const CheckpointMeta& got, const CheckpointMeta& want) {
  auto differs = [](const char* flag, const auto& a, const auto& b) {
    return fmt::format("it was written with {} {}, this run has {}", flag, a, b);
  };
  if (got.strategy != want.strategy) return differs("--strategy", got.strategy, want.strategy);
  if (got.model != want.model) return differs("--model", got.model, want.model);
  if (got.width != want.width) return differs("--width", got.width, want.width);
  if (got.depth != want.depth) return differs("--depth", got.depth, want.depth);
  if (got.data != want.data) return differs("--data", got.data, want.data);
  if (got.batch_size != want.batch_size) return differs("--batch-size", got.batch_size, want.batch_size);
  if (got.seed != want.seed) return differs("--seed", got.seed, want.seed);
  if (got.optimizer != want.optimizer) return differs("--optimizer", got.optimizer, want.optimizer);
  if (got.partition != want.partition) return differs("--partition", got.partition, want.partition);
  if (got.dp != want.dp) return differs("--dp", got.dp, want.dp);
  if (got.pp != want.pp) return differs("--pp", got.pp, want.pp);
  if (got.reshardable != want.reshardable) {
    return fmt::format("its optimizer state is {} and this run's is {} (--zero must match)",
                       got.reshardable ? "sharded" : "not sharded", want.reshardable ? "sharded" : "not sharded");
  }
  if (got.world_size != want.world_size && !(got.replicated && want.replicated) &&
      !(got.reshardable && want.reshardable)) {
    return fmt::format(
        "it was written by {} processes and this run has {}; only --strategy allreduce --sync grads "
        "(whose ranks all hold the same model) can resume with another number of workers",
        got.world_size, want.world_size);
  }
  return "";
}

}  // namespace loom::train
