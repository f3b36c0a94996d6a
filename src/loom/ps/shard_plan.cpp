#include "loom/ps/shard_plan.h"

#include <fmt/format.h>

#include <algorithm>
#include <numeric>

#include "loom/core/error.h"

namespace loom::ps {

int64_t TensorSpec::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

ShardPlan plan_shards(const std::vector<TensorSpec>& tensors, int num_servers, int64_t slice_bytes) {
  LOOM_CHECK(num_servers >= 1, ConfigError, "--servers must be at least 1, got {}", num_servers);
  ShardPlan plan;
  plan.keys_of_param.resize(tensors.size());
  for (size_t p = 0; p < tensors.size(); ++p) {
    const TensorSpec& t = tensors[p];
    LOOM_CHECK(t.element_bytes > 0 && slice_bytes >= t.element_bytes, ConfigError,
               "parameter-server slice size {} bytes is smaller than one element of '{}'", slice_bytes, t.name);
    const int64_t numel = t.numel();
    const int64_t per_slice = slice_bytes / t.element_bytes;
    const int64_t count = std::max<int64_t>(1, (numel + per_slice - 1) / per_slice);
    // Nearly equal slices: the first `numel % count` get one element more.
    int64_t offset = 0;
    for (int64_t i = 0; i < count; ++i) {
      const int64_t n = numel / count + (i < numel % count ? 1 : 0);
      Slice s;
      s.key = plan.slices.size();
      s.param = p;
      s.offset = offset;
      s.numel = n;
      offset += n;
      plan.keys_of_param[p].push_back(s.key);
      plan.slices.push_back(s);
    }
  }
  // Largest first onto the least-loaded server.
  std::vector<size_t> order(plan.slices.size());
  std::iota(order.begin(), order.end(), 0);
  auto bytes_of = [&](size_t k) { return plan.slices[k].numel * tensors[plan.slices[k].param].element_bytes; };
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return bytes_of(a) > bytes_of(b); });
  plan.server_bytes.assign(num_servers, 0);
  for (size_t k : order) {
    const auto least = std::min_element(plan.server_bytes.begin(), plan.server_bytes.end());
    plan.slices[k].server = static_cast<int>(least - plan.server_bytes.begin());
    *least += bytes_of(k);
  }
  return plan;
}

std::string describe(const ShardPlan& plan) {
  std::vector<int> counts(plan.server_bytes.size(), 0);
  for (const Slice& s : plan.slices) ++counts[s.server];
  std::string out =
      fmt::format("{} server{}, {} slice{}:", plan.server_bytes.size(), plan.server_bytes.size() == 1 ? "" : "s",
                  plan.slices.size(), plan.slices.size() == 1 ? "" : "s");
  for (size_t i = 0; i < plan.server_bytes.size(); ++i) {
    out += fmt::format("{} server {} {:.2f} MiB ({} slice{})", i ? "," : "", i, plan.server_bytes[i] / double(1 << 20),
                       counts[i], counts[i] == 1 ? "" : "s");
  }
  return out;
}

}  // namespace loom::ps
