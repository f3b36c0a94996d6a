#include "loom/ps/server_checkpoint.h"

#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <sstream>
#include <vector>

#include "loom/core/atomic_file.h"
#include "loom/core/checked_file.h"
#include "loom/core/error.h"
#include "loom/core/log.h"
#include "loom/ps/server.h"

namespace loom::ps {

namespace {

constexpr CheckedFormat kFormat{"LOOMPSV1", "parameter-server checkpoint", "checkpoint"};
// What a bare torch::serialize archive (a zip file) starts with: the format before the frame.
constexpr std::string_view kZipMagic("PK\x03\x04", 4);

// The first line of an exception's message (libtorch's carry a backtrace).
std::string first_line(const std::exception& e) {
  const std::string what = e.what();
  return what.substr(0, what.find('\n'));
}

}  // namespace

std::string checkpoint_name_problem(std::string_view name) {
  if (name.empty()) return "it is empty";
  if (name.size() > 128) return fmt::format("it has {} characters, at most 128 are allowed", name.size());
  for (const char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == '-' || c == '+';
    if (!ok) {
      return c == '/' ? "it contains '/'"
                      : fmt::format("it contains the byte 0x{:02x} (allowed: A-Z a-z 0-9 . _ + -)",
                                    static_cast<unsigned char>(c));
    }
  }
  if (name.front() == '.') return "it starts with '.'";
  if (name.find("..") != std::string_view::npos) return "it contains '..'";
  return "";
}

SavePrefix split_save_prefix(const std::string& prefix) {
  const std::filesystem::path path(prefix);
  SavePrefix out;
  out.name = path.filename().string();
  out.dir = path.has_parent_path() ? path.parent_path().string() : std::string(".");
  const std::string problem = checkpoint_name_problem(out.name);
  LOOM_CHECK(problem.empty(), ConfigError,
             "--ps-save {}: '{}' cannot name the servers' files: {} (the directory goes before the last '/')", prefix,
             out.name, problem);
  return out;
}

size_t write_server_checkpoint(const std::string& path, const std::unordered_map<uint64_t, Slot>& slots,
                               int64_t slice_bytes) {
  torch::serialize::OutputArchive archive;
  std::vector<int64_t> keys;
  for (const auto& [key, slot] : slots) keys.push_back(static_cast<int64_t>(key));
  std::sort(keys.begin(), keys.end());
  archive.write("keys", torch::tensor(keys, torch::kLong));
  archive.write("slice_bytes", torch::tensor({slice_bytes}, torch::kLong));
  for (int64_t key : keys) {
    const Slot& slot = slots.at(static_cast<uint64_t>(key));
    archive.write(fmt::format("value.{}", key), slot.param.detach());
    archive.write(fmt::format("version.{}", key), torch::tensor({slot.version}, torch::kLong));
    torch::serialize::OutputArchive optim;
    slot.optimizer->save(optim);
    archive.write(fmt::format("optimizer.{}", key), optim);
  }
  std::ostringstream bytes;
  archive.save_to(bytes);
  write_checked_file(path, kFormat, bytes.str());
  return keys.size();
}

size_t read_server_checkpoint(const std::string& path, int64_t slice_bytes, const RestoreSlot& restore) {
  std::string bytes;
  try {
    bytes = read_file(path);
  } catch (const DataError& e) {
    LOOM_THROW(CheckpointError, "{}", e.what());
  }
  std::string payload;
  if (has_magic(bytes, kZipMagic)) {
    log::warn("{}: a parameter-server checkpoint without a checksum (written by an older loom)", path);
    payload = std::move(bytes);
  } else {
    payload = std::string(unframe_checked(path, kFormat, bytes));
    bytes.clear();
  }
  try {
    torch::serialize::InputArchive archive;
    std::istringstream in(std::move(payload));
    archive.load_from(in);
    at::Tensor keys;
    archive.read("keys", keys);
    // Keys are slices (shard_plan.h): with another slice size the same key is another
    // part of another parameter, or on another server.
    at::Tensor saved_slice;
    if (slice_bytes > 0 && archive.try_read("slice_bytes", saved_slice)) {
      const int64_t saved = saved_slice.item<int64_t>();
      const double saved_mb = static_cast<double>(saved) / (1 << 20);
      LOOM_CHECK(saved <= 0 || saved == slice_bytes, CheckpointError,
                 "{} was written with --ps-slice-mb {:g} ({} bytes), this run has --ps-slice-mb {:g} ({} bytes): its "
                 "keys are slices of that size, so start from it with --ps-slice-mb {:g}",
                 path, saved_mb, saved, static_cast<double>(slice_bytes) / (1 << 20), slice_bytes, saved_mb);
    }
    for (int64_t i = 0; i < keys.numel(); ++i) {
      const int64_t key = keys[i].item<int64_t>();
      at::Tensor values, version;
      archive.read(fmt::format("value.{}", key), values);
      archive.read(fmt::format("version.{}", key), version);
      Slot& slot = restore(static_cast<uint64_t>(key), values, version.item<int64_t>());
      torch::serialize::InputArchive optim;
      archive.read(fmt::format("optimizer.{}", key), optim);
      slot.optimizer->load(optim);
    }
    return static_cast<size_t>(keys.numel());
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    LOOM_THROW(CheckpointError, "cannot read the checkpoint {}: {}", path, first_line(e));
  }
}

}  // namespace loom::ps
