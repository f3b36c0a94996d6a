// Helpers for the dp/ tests: ranks as threads over real Gloo groups
// (support/thread_ranks.h), fixed global batches, and a single-process reference run
// to compare against.
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <exception>
#include <functional>
#include <thread>
#include <vector>

#include "loom/comm/context.h"
#include "loom/models/registry.h"
#include "support/tensor_compare.h"
#include "support/thread_ranks.h"

namespace loom::dp::testing {

// One intra-op thread per process: the ranks are threads already. A test file that wants
// it declares one at namespace scope (`const Init init;`).
struct Init {
  Init() { torch::set_num_threads(1); }
};

// The small MLP of the DDP and ZeRO tests (models' "mlp"): samples of shape kMlpSample,
// kMlpClasses classes, weights drawn from `seed`.
inline const std::vector<int64_t> kMlpSample{1, 4, 4};
inline constexpr int64_t kMlpClasses = 5;
inline torch::nn::Sequential mlp(uint64_t seed = 1) {
  loom::models::ModelOptions o;
  o.sample_shape = kMlpSample;
  o.num_classes = kMlpClasses;
  o.seed = seed;
  return loom::models::make_model("mlp", o);
}

inline at::Tensor loss_of(const at::Tensor& logits, const at::Tensor& y) {
  return torch::nn::functional::cross_entropy(logits, y);
}

// Runs fn(ctx) on `world` threads, one rank each (support/thread_ranks.h: one
// in-process store); returns each rank's exception (or null).
inline std::vector<std::exception_ptr> run_ranks_collect(int world, const std::function<void(comm::Context&)>& fn,
                                                         std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
  return loom::test::run_thread_ranks(world, fn, loom::test::with_timeout(timeout));
}

// As run_ranks_collect, rethrowing the first failure.
inline void run_ranks(int world, const std::function<void(comm::Context&)>& fn,
                      std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
  for (auto& e : run_ranks_collect(world, fn, timeout)) {
    if (e) std::rethrow_exception(e);
  }
}

// `steps` global batches of `batch` samples of shape `sample_shape`, made in the calling
// thread from a fixed seed.
struct Batches {
  std::vector<at::Tensor> x, y;
};
inline Batches make_batches(int steps, int64_t batch, std::vector<int64_t> sample_shape, int64_t classes,
                            uint64_t seed = 7) {
  torch::manual_seed(seed);
  Batches b;
  std::vector<int64_t> shape{batch};
  shape.insert(shape.end(), sample_shape.begin(), sample_shape.end());
  for (int s = 0; s < steps; ++s) {
    b.x.push_back(torch::randn(shape));
    b.y.push_back(torch::randint(classes, {batch}, torch::kLong));
  }
  return b;
}

// First sample index of each rank's slice, for per-rank sample counts.
inline std::vector<int64_t> offsets_of(const std::vector<int64_t>& counts) {
  std::vector<int64_t> out{0};
  for (size_t i = 0; i + 1 < counts.size(); ++i) out.push_back(out.back() + counts[i]);
  return out;
}

inline int64_t sum_of(const std::vector<int64_t>& counts) {
  int64_t s = 0;
  for (auto c : counts) s += c;
  return s;
}

inline std::vector<at::Tensor> snapshot(torch::nn::Module& m) {
  std::vector<at::Tensor> out;
  for (const auto& p : m.parameters()) out.push_back(p.detach().clone());
  return out;
}

// NaN-safe (support/tensor_compare.h): a NaN, an infinity, a shape or a count that
// differs is an infinite difference.
using loom::test::max_abs;
using loom::test::max_abs_diff;

inline void copy_params(torch::nn::Module& from, torch::nn::Module& to) {
  torch::NoGradGuard no_grad;
  auto src = from.parameters();
  auto dst = to.parameters();
  for (size_t i = 0; i < src.size(); ++i) dst[i].copy_(src[i]);
}

}  // namespace loom::dp::testing
