#include "loom/dp/model_consistency.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "loom/comm/group.h"
#include "loom/core/error.h"

namespace loom::dp {

namespace {

constexpr int64_t kDescriptionBytes = 512;
constexpr char kSep = '\x1f';

std::string signature(const NamedTensor& e) {
  return e.kind + kSep + e.name + kSep + c10::toString(e.tensor.scalar_type()) + kSep + shape_string(e.tensor);
}

// FNV-1a, 64 bit: the same on every machine (std::hash is not guaranteed to be).
int64_t fnv1a(const std::string& s, uint64_t h = 14695981039346656037ull) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return static_cast<int64_t>(h & 0x7fffffffffffffffull);  // never the padding value -1
}

std::vector<at::Tensor> gather(comm::Group& group, const at::Tensor& input) {
  std::vector<at::Tensor> out;
  for (int r = 0; r < group.size(); ++r) out.push_back(at::empty_like(input));
  group.allgather(out, input).wait();
  return out;
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> parts(1);
  for (char c : s) {
    if (c == kSep) {
      parts.emplace_back();
    } else {
      parts.back() += c;
    }
  }
  return parts;
}

[[noreturn]] void throw_mismatch(comm::Group& group, const std::vector<NamedTensor>& entries,
                                 const std::vector<int64_t>& counts) {
  // Every rank takes this path (they all saw the same gathered summaries), so the two
  // further collectives below match up.
  const int n = group.size();
  const int64_t max_count = *std::max_element(counts.begin(), counts.end());
  std::vector<int64_t> local(static_cast<size_t>(std::max<int64_t>(max_count, 1)), -1);
  for (size_t i = 0; i < entries.size(); ++i) local[i] = fnv1a(signature(entries[i]));
  const at::Tensor hashes = at::tensor(local, at::kLong);
  const auto all = gather(group, hashes);
  int64_t first = -1;
  int other = -1;
  for (int64_t i = 0; i < max_count && first < 0; ++i) {
    const int64_t ref = all[0].data_ptr<int64_t>()[i];
    for (int r = 1; r < n; ++r) {
      if (all[r].data_ptr<int64_t>()[i] != ref) {
        first = i;
        other = r;
        break;
      }
    }
  }
  LOOM_CHECK(first >= 0, ModelError, "model mismatch across ranks (hash collision?)");

  at::Tensor desc = at::zeros({kDescriptionBytes}, at::kByte);
  if (first < static_cast<int64_t>(entries.size())) {
    std::string s = signature(entries[static_cast<size_t>(first)]);
    s.resize(std::min<size_t>(s.size(), kDescriptionBytes - 1));
    std::memcpy(desc.data_ptr<uint8_t>(), s.data(), s.size());
  }
  const auto descs = gather(group, desc);
  auto text = [&](int r) { return std::string(reinterpret_cast<const char*>(descs[r].data_ptr<uint8_t>())); };
  const std::string a_text = text(0), b_text = text(other);
  const int ra = group.global_rank(0), rb = group.global_rank(other);
  const std::string prefix = "model mismatch across ranks: ";
  if (a_text.empty() || b_text.empty()) {
    const int present_on = a_text.empty() ? rb : ra;
    const auto p = split(a_text.empty() ? b_text : a_text);
    LOOM_THROW(ModelError,
               "{}rank {} has {} parameters and buffers but rank {} has {} ({} '{}' exists only on rank {})", prefix,
               ra, counts[0], rb, counts[static_cast<size_t>(other)], p[0], p.size() > 1 ? p[1] : "", present_on);
  }
  const auto a = split(a_text), b = split(b_text);
  if (a.size() < 4 || b.size() < 4 || a[0] != b[0] || a[1] != b[1]) {
    LOOM_THROW(ModelError, "{}entry #{} is {} '{}' on rank {} but {} '{}' on rank {}", prefix, first, a[0],
               a.size() > 1 ? a[1] : "", ra, b[0], b.size() > 1 ? b[1] : "", rb);
  }
  if (a[2] != b[2]) {
    LOOM_THROW(ModelError, "{}{} '{}' has dtype {} on rank {} but {} on rank {}", prefix, a[0], a[1], a[2], ra, b[2],
               rb);
  }
  LOOM_THROW(ModelError, "{}{} '{}' has shape {} on rank {} but {} on rank {}", prefix, a[0], a[1], a[3], ra, b[3], rb);
}

}  // namespace

std::string shape_string(const at::Tensor& t) {
  if (t.dim() == 0) return "scalar";
  std::string out;
  for (int64_t d = 0; d < t.dim(); ++d) {
    if (d) out += 'x';
    out += std::to_string(t.size(d));
  }
  return out;
}

void check_same_model(comm::Group& group, const std::vector<NamedTensor>& entries) {
  if (group.size() == 1) return;
  uint64_t h = 14695981039346656037ull;
  for (const auto& e : entries) h = static_cast<uint64_t>(fnv1a(signature(e) + '\n', h));
  const at::Tensor summary =
      at::tensor(std::vector<int64_t>{static_cast<int64_t>(entries.size()), static_cast<int64_t>(h)}, at::kLong);
  const auto all = gather(group, summary);
  std::vector<int64_t> counts;
  bool same = true;
  for (const auto& s : all) {
    counts.push_back(s[0].item<int64_t>());
    same = same && s.equal(all[0]);
  }
  if (!same) throw_mismatch(group, entries, counts);
}

}  // namespace loom::dp
