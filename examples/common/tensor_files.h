// Test aid shared by the examples (not part of the lesson): write a model's parameters
// to a file, and compare two such files, NaN-safe, for `<example> --compare A B`.
#pragma once

#include <torch/torch.h>

#include <cmath>
#include <iostream>
#include <limits>
#include <string>
#include <vector>

namespace examples {

// The module's parameters, in registration order, as a file torch::load reads back.
inline void save_parameters(const torch::nn::Module& module, const std::string& path) {
  std::vector<torch::Tensor> tensors;
  for (const auto& p : module.parameters()) tensors.push_back(p.detach().clone());
  torch::save(tensors, path);
}

// The largest absolute difference between two parameter files; infinity when they differ
// in count or shape or when either holds a NaN (a NaN is never "close").
inline double max_abs_diff(const std::string& path_a, const std::string& path_b) {
  std::vector<torch::Tensor> a, b;
  torch::load(a, path_a);
  torch::load(b, path_b);
  const double inf = std::numeric_limits<double>::infinity();
  if (a.empty() || a.size() != b.size()) return inf;
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!a[i].sizes().equals(b[i].sizes())) return inf;
    const double d = (a[i] - b[i]).abs().max().item<double>();  // NaN when either has one
    if (std::isnan(d)) return inf;
    worst = std::max(worst, d);
  }
  return worst;
}

// `<example> --compare A B [TOLERANCE]`: exit 0 when A and B are within TOLERANCE (1e-5).
inline int compare_main(int argc, char** argv) {
  const std::string a = argv[2], b = argv[3];
  const double tolerance = argc > 4 ? std::stod(argv[4]) : 1e-5;
  const double d = max_abs_diff(a, b);
  std::cout << "max |" << a << " - " << b << "| = " << d << (d <= tolerance ? " <= " : " > ") << tolerance << std::endl;
  return d <= tolerance ? 0 : 1;
}

}  // namespace examples
