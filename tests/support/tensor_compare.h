// Test support: NaN-safe tensor comparison, the one way every test compares parameters.
//
// The naive form, std::max(worst, (a - b).abs().max().item<double>()), is blind to NaN:
// max() of a tensor holding a NaN is NaN, and std::max(0.0, NaN) is 0.0, so a model full
// of NaN "equals" any reference, bitwise. Here a difference is +infinity whenever it
// cannot be a finite number: a NaN or an infinity in either tensor (even in both, at the
// same place: a trained model must be finite), different shapes, different counts of
// tensors, or a name present on one side only. So `EXPECT_LT(diff, tol)` and
// `EXPECT_EQ(diff, 0.0)` fail on all of those.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <limits>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace loom::test {

inline constexpr double kInfiniteDifference = std::numeric_limits<double>::infinity();

// The largest |a - b| over the elements (in double precision), or +infinity as above.
// Two empty tensors of the same shape differ by 0.
inline double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  if (!a.defined() || !b.defined()) return a.defined() == b.defined() ? 0.0 : kInfiniteDifference;
  if (!a.sizes().equals(b.sizes())) return kInfiniteDifference;
  if (a.numel() == 0) return 0.0;
  const at::Tensor x = a.detach().to(at::kDouble), y = b.detach().to(at::kDouble);
  if (!x.isfinite().all().item<bool>() || !y.isfinite().all().item<bool>()) return kInfiniteDifference;
  const double d = (x - y).abs().max().item<double>();
  return d == d ? d : kInfiniteDifference;
}

// Over two lists compared position by position; different lengths: +infinity.
inline double max_abs_diff(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
  if (a.size() != b.size()) return kInfiniteDifference;
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, max_abs_diff(a[i], b[i]));
  return worst;
}

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

// Over two named lists (model files) compared by name, whatever their order; a name on
// one side only, or a name given twice: +infinity.
inline double max_abs_diff(const NamedTensors& a, const NamedTensors& b) {
  std::map<std::string, at::Tensor> by_name;
  for (const auto& [name, t] : b) {
    if (!by_name.emplace(name, t).second) return kInfiniteDifference;
  }
  if (by_name.size() != a.size()) return kInfiniteDifference;
  double worst = 0;
  for (const auto& [name, t] : a) {
    const auto it = by_name.find(name);
    if (it == by_name.end()) return kInfiniteDifference;
    worst = std::max(worst, max_abs_diff(t, it->second));
    by_name.erase(it);  // a name twice in `a` then misses here
  }
  return worst;
}

// The largest |x| over every element of every tensor; +infinity on any NaN or infinity.
inline double max_abs(const std::vector<at::Tensor>& tensors) {
  double worst = 0;
  for (const auto& t : tensors) {
    if (t.numel() == 0) continue;
    const at::Tensor x = t.detach().to(at::kDouble);
    if (!x.isfinite().all().item<bool>()) return kInfiniteDifference;
    worst = std::max(worst, x.abs().max().item<double>());
  }
  return worst;
}

}  // namespace loom::test
