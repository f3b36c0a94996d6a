// DistributedDataParallel against a single-process run on the same global batches:
// every rank is a thread with a real TCPStore and Gloo group (see dp_testing.h).
#include "loom/dp/distributed_data_parallel.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <mutex>
#include <set>

#include "loom/core/error.h"
#include "loom/models/registry.h"
#include "loom/trace/tracer.h"
#include "unit/dp/dp_testing.h"

namespace {

using loom::comm::Context;
using loom::dp::DdpOptions;
using loom::dp::DistributedDataParallel;
namespace t = loom::dp::testing;

constexpr int kSteps = 20;
const std::vector<int64_t>& kSample = t::kMlpSample;
constexpr int64_t kClasses = t::kMlpClasses;
using t::loss_of;
using t::mlp;

const t::Init init;

torch::optim::SGD sgd(torch::nn::Module& m, double momentum = 0.9) {
  return torch::optim::SGD(m.parameters(), torch::optim::SGDOptions(0.1).momentum(momentum));
}

// The single-process run: the full global batch each step.
std::vector<at::Tensor> reference_run(torch::nn::Sequential model, const t::Batches& data, int steps,
                                      double momentum = 0.9) {
  auto opt = sgd(*model, momentum);
  for (int s = 0; s < steps; ++s) {
    opt.zero_grad();
    loss_of(model->forward(data.x[s]), data.y[s]).backward();
    opt.step();
  }
  return t::snapshot(*model);
}

// One rank's DDP run: its slice of each global batch, weight = its share.
std::vector<at::Tensor> ddp_run(Context& ctx, torch::nn::Sequential model, const t::Batches& data,
                                const std::vector<int64_t>& counts, int steps, DdpOptions options = {}) {
  const int r = ctx.rank();
  const int64_t off = t::offsets_of(counts)[r], n = counts[r], total = t::sum_of(counts);
  DistributedDataParallel ddp(model, ctx.world(), options);
  auto opt = sgd(*model);
  for (int s = 0; s < steps; ++s) {
    opt.zero_grad();
    ddp.set_weight(double(n) / double(total));
    loss_of(model->forward(data.x[s].narrow(0, off, n)), data.y[s].narrow(0, off, n)).backward();
    ddp.finish();
    opt.step();
  }
  return t::snapshot(*model);
}

// Runs DDP on counts.size() ranks (rank r > 0 starts from a different init, which the
// constructor's broadcast must fix) and returns every rank's final parameters.
std::vector<std::vector<at::Tensor>> run_equivalence(const std::vector<int64_t>& counts, const t::Batches& data,
                                                     DdpOptions options = {},
                                                     std::function<torch::nn::Sequential()> make = {}) {
  const int world = static_cast<int>(counts.size());
  if (!make) make = [] { return mlp(); };
  std::vector<torch::nn::Sequential> models;
  for (int r = 0; r < world; ++r) {
    models.push_back(make());
    if (r > 0) {
      torch::NoGradGuard g;
      for (auto& p : models.back()->parameters()) p.add_(0.5);
    }
  }
  std::vector<std::vector<at::Tensor>> results(world);
  t::run_ranks(world, [&](Context& ctx) {
    results[ctx.rank()] = ddp_run(ctx, models[ctx.rank()], data, counts, kSteps, options);
  });
  return results;
}

void expect_all_close(const std::vector<std::vector<at::Tensor>>& results, const std::vector<at::Tensor>& ref,
                      double tol = 1e-5) {
  for (size_t r = 0; r < results.size(); ++r) {
    EXPECT_LE(t::max_abs_diff(results[r], ref), tol) << "rank " << r;
  }
}

TEST(DistributedDataParallel, TwoRanksEqualSingleProcess) {
  const auto data = t::make_batches(kSteps, 12, kSample, kClasses);
  const auto ref = reference_run(mlp(), data, kSteps);
  expect_all_close(run_equivalence({6, 6}, data), ref);
}

TEST(DistributedDataParallel, ThreeRanksEqualSingleProcess) {
  const auto data = t::make_batches(kSteps, 12, kSample, kClasses);
  const auto ref = reference_run(mlp(), data, kSteps);
  expect_all_close(run_equivalence({4, 4, 4}, data), ref);
}

TEST(DistributedDataParallel, UnevenSharesEqualSingleProcess) {
  const auto data = t::make_batches(kSteps, 16, kSample, kClasses);
  const auto ref = reference_run(mlp(), data, kSteps);
  expect_all_close(run_equivalence({8, 4, 4}, data), ref);
}

// deep-mlp: 4 -> 8 -> 8 -> 8 -> 3, small enough to predict the buckets by hand.
torch::nn::Sequential small_deep_mlp(int64_t width = 8, int64_t depth = 4) {
  loom::models::ModelOptions o;
  o.sample_shape = {1, 2, 2};
  o.num_classes = 3;
  o.width = width;
  o.depth = depth;
  return loom::models::make_model("deep-mlp", o);
}

DdpOptions tiny_buckets() {
  DdpOptions o;
  o.first_bucket_mb = 64.0 / (1 << 20);  // 64 bytes: 16 floats
  o.bucket_cap_mb = 256.0 / (1 << 20);   // 256 bytes: 64 floats
  return o;
}

TEST(DistributedDataParallel, SmallCapsGiveExpectedBucketsAndSameResults) {
  const auto data = t::make_batches(kSteps, 8, {1, 2, 2}, 3);
  const auto ref = reference_run(small_deep_mlp(), data, kSteps);
  std::vector<torch::nn::Sequential> models{small_deep_mlp(), small_deep_mlp()};
  std::vector<std::vector<at::Tensor>> results(2);
  std::vector<std::string> initial(2);
  loom::trace::Tracer tracer(0, true);
  std::vector<int64_t> backward_end(2);
  t::run_ranks(2, [&](Context& ctx) {
    const int r = ctx.rank();
    auto options = tiny_buckets();
    if (r == 0) options.tracer = &tracer;
    auto model = models[r];
    DistributedDataParallel ddp(model, ctx.world(), options);
    initial[r] = ddp.describe_buckets();
    auto opt = sgd(*model);
    for (int s = 0; s < kSteps; ++s) {
      opt.zero_grad();
      auto span = tracer.span("backward");
      loss_of(model->forward(data.x[s].narrow(0, 4 * r, 4)), data.y[s].narrow(0, 4 * r, 4)).backward();
      backward_end[r] = loom::trace::Tracer::now_us();
      ddp.finish();
      opt.step();
    }
    EXPECT_GE(ddp.bucket_plan().buckets.size(), 5u);
    results[r] = t::snapshot(*model);
  });
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(initial[r], "[7.bias] [7.weight 5.bias] [5.weight] [3.bias] [3.weight] [1.bias 1.weight]");
  }
  expect_all_close(results, ref);
  const std::string trace = tracer.events_json();
  EXPECT_NE(trace.find("\"name\":\"allreduce bucket 0\""), std::string::npos);
  EXPECT_NE(trace.find("\"name\":\"allreduce bucket 5\""), std::string::npos);
  EXPECT_NE(trace.find("\"tid\":1"), std::string::npos);
  // Overlap: in the last step, bucket 0 (the last layer's bias) was launched while
  // backward was still running, i.e. before backward() returned.
  const auto events = nlohmann::json::parse("[" + trace + "]");
  int64_t last_launch = 0;
  for (const auto& e : events) {
    if (e.value("name", "") == "allreduce bucket 0") last_launch = std::max<int64_t>(last_launch, e["ts"]);
  }
  EXPECT_GT(last_launch, 0);
  EXPECT_LT(last_launch, backward_end[0]);
}

// Registers its output layer first but applies it last, so gradients arrive in an
// order other than reverse registration: head.*, then body.*.
struct ReorderedImpl : torch::nn::Module {
  ReorderedImpl() {
    head = register_module("head", torch::nn::Linear(8, 3));
    body = register_module("body", torch::nn::Linear(4, 8));
  }
  at::Tensor forward(const at::Tensor& x) { return head(torch::relu(body(x.flatten(1)))); }
  torch::nn::Linear head{nullptr}, body{nullptr};
};
TORCH_MODULE(Reordered);

TEST(DistributedDataParallel, BucketsAreRebuiltFromGradientOrder) {
  const auto data = t::make_batches(kSteps, 8, {1, 2, 2}, 3);
  Reordered reference;
  std::vector<Reordered> models{Reordered(), Reordered()};
  t::copy_params(*reference, *models[0]);
  // Reference run.
  {
    auto opt = sgd(*reference);
    for (int s = 0; s < kSteps; ++s) {
      opt.zero_grad();
      loss_of(reference->forward(data.x[s]), data.y[s]).backward();
      opt.step();
    }
  }
  const auto ref = t::snapshot(*reference);
  std::vector<std::vector<at::Tensor>> results(2);
  std::vector<std::vector<std::string>> before(2), after(2);
  std::vector<std::string> plans(2);
  t::run_ranks(2, [&](Context& ctx) {
    const int r = ctx.rank();
    auto model = models[r];
    DdpOptions options;
    options.first_bucket_mb = 16.0 / (1 << 20);
    options.bucket_cap_mb = 64.0 / (1 << 20);
    DistributedDataParallel ddp(model, ctx.world(), options);
    auto names = [&] {
      std::vector<std::string> out;
      for (size_t i : ddp.bucket_plan().order) out.push_back(ddp.parameter_names()[i]);
      return out;
    };
    before[r] = names();
    EXPECT_FALSE(ddp.buckets_rebuilt());
    auto opt = sgd(*model);
    for (int s = 0; s < kSteps; ++s) {
      opt.zero_grad();
      loss_of(model->forward(data.x[s].narrow(0, 4 * r, 4)), data.y[s].narrow(0, 4 * r, 4)).backward();
      ddp.finish();
      opt.step();
      if (s == 0) {
        EXPECT_TRUE(ddp.buckets_rebuilt());
        after[r] = names();
        plans[r] = ddp.describe_buckets();
      }
    }
    results[r] = t::snapshot(*model);
  });
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(before[r], (std::vector<std::string>{"body.bias", "body.weight", "head.bias", "head.weight"}));
    ASSERT_EQ(after[r].size(), 4u);
    EXPECT_EQ(after[r][0].rfind("head.", 0), 0u) << plans[r];
    EXPECT_EQ(after[r][1].rfind("head.", 0), 0u) << plans[r];
    EXPECT_EQ(after[r][2].rfind("body.", 0), 0u) << plans[r];
    EXPECT_EQ(plans[r], plans[0]);
  }
  expect_all_close(results, ref);
}

TEST(DistributedDataParallel, NoSyncAccumulationEqualsFullBatch) {
  const int steps = 10;
  const auto data = t::make_batches(steps, 12, kSample, kClasses);
  const auto ref = reference_run(mlp(), data, steps);
  std::vector<torch::nn::Sequential> models{mlp(), mlp()};
  std::vector<std::vector<at::Tensor>> results(2);
  t::run_ranks(2, [&](Context& ctx) {
    const int r = ctx.rank();
    auto model = models[r];
    DistributedDataParallel ddp(model, ctx.world());
    auto opt = sgd(*model);
    for (int s = 0; s < steps; ++s) {
      opt.zero_grad();
      ddp.set_weight(0.5);
      // Rank r holds samples [6r, 6r + 6): two micro-batches of 3, each half the loss.
      const auto x = data.x[s].narrow(0, 6 * r, 6), y = data.y[s].narrow(0, 6 * r, 6);
      {
        auto guard = ddp.no_sync();
        EXPECT_FALSE(ddp.sync());
        (0.5 * loss_of(model->forward(x.narrow(0, 0, 3)), y.narrow(0, 0, 3))).backward();
        ddp.finish();  // a no-op without sync
      }
      EXPECT_TRUE(ddp.sync());
      (0.5 * loss_of(model->forward(x.narrow(0, 3, 3)), y.narrow(0, 3, 3))).backward();
      ddp.finish();
      opt.step();
    }
    results[r] = t::snapshot(*model);
  });
  expect_all_close(results, ref);
}

// A middle layer that forward may skip.
struct WithExtraImpl : torch::nn::Module {
  WithExtraImpl() {
    a = register_module("a", torch::nn::Linear(4, 8));
    extra = register_module("extra", torch::nn::Linear(8, 8));
    b = register_module("b", torch::nn::Linear(8, 3));
  }
  at::Tensor forward(const at::Tensor& x, bool use_extra) {
    auto h = torch::relu(a(x.flatten(1)));
    if (use_extra) h = torch::relu(extra(h));
    return b(h);
  }
  torch::nn::Linear a{nullptr}, extra{nullptr}, b{nullptr};
};
TORCH_MODULE(WithExtra);

// Every rank must fail with a ModelError naming the parameters, well within the timeout.
void expect_unused_error(const std::function<bool(int)>& use_extra, const std::string& expected) {
  const auto data = t::make_batches(1, 8, {1, 2, 2}, 3);
  std::vector<WithExtra> models{WithExtra(), WithExtra()};
  const auto start = std::chrono::steady_clock::now();
  const auto errors = t::run_ranks_collect(
      2,
      [&](Context& ctx) {
        const int r = ctx.rank();
        auto model = models[r];
        DistributedDataParallel ddp(model.ptr(), ctx.world());
        loss_of(model->forward(data.x[0].narrow(0, 4 * r, 4), use_extra(r)), data.y[0].narrow(0, 4 * r, 4)).backward();
        ddp.finish();
      },
      std::chrono::seconds(20));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  for (int r = 0; r < 2; ++r) {
    ASSERT_TRUE(errors[r]) << "rank " << r << " did not fail";
    try {
      std::rethrow_exception(errors[r]);
    } catch (const loom::ModelError& e) {
      EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("find_unused_parameters"), std::string::npos) << e.what();
    } catch (const std::exception& e) {
      ADD_FAILURE() << "rank " << r << ": not a ModelError: " << e.what();
    }
  }
}

TEST(DistributedDataParallel, UnusedParameterFailsOnEveryRank) {
  expect_unused_error([](int) { return false; }, "'extra.weight' (on 2 of 2 ranks), 'extra.bias' (on 2 of 2 ranks)");
}

TEST(DistributedDataParallel, ParameterUnusedOnOneRankFailsOnEveryRank) {
  expect_unused_error([](int r) { return r == 0; }, "'extra.weight' (on 1 of 2 ranks)");
}

TEST(DistributedDataParallel, FindUnusedParametersTreatsThemAsZero) {
  const int steps = 5;
  const auto data = t::make_batches(steps, 8, {1, 2, 2}, 3);
  WithExtra reference;
  std::vector<WithExtra> models{WithExtra(), WithExtra()};
  t::copy_params(*reference, *models[0]);
  {
    auto opt = sgd(*reference);
    for (int s = 0; s < steps; ++s) {
      opt.zero_grad();
      loss_of(reference->forward(data.x[s], false), data.y[s]).backward();
      opt.step();
    }
  }
  const auto ref = t::snapshot(*reference);
  std::vector<std::vector<at::Tensor>> results(2);
  t::run_ranks(2, [&](Context& ctx) {
    const int r = ctx.rank();
    auto model = models[r];
    DdpOptions options;
    options.find_unused_parameters = true;
    DistributedDataParallel ddp(model, ctx.world(), options);
    auto opt = sgd(*model);
    for (int s = 0; s < steps; ++s) {
      opt.zero_grad();
      loss_of(model->forward(data.x[s].narrow(0, 4 * r, 4), false), data.y[s].narrow(0, 4 * r, 4)).backward();
      ddp.finish();
      EXPECT_FALSE(model->extra->weight.grad().defined());  // unused everywhere: left alone
      opt.step();
    }
    results[r] = t::snapshot(*model);
  });
  expect_all_close(results, ref);
}

TEST(DistributedDataParallel, MismatchedModelFailsOnEveryRankNamingTheParameter) {
  std::vector<torch::nn::Sequential> models{small_deep_mlp(8), small_deep_mlp(8), small_deep_mlp(16)};
  const auto errors =
      t::run_ranks_collect(3, [&](Context& ctx) { DistributedDataParallel ddp(models[ctx.rank()], ctx.world()); });
  for (int r = 0; r < 3; ++r) {
    ASSERT_TRUE(errors[r]) << "rank " << r << " did not fail";
    try {
      std::rethrow_exception(errors[r]);
    } catch (const loom::ModelError& e) {
      EXPECT_EQ(std::string(e.what()),
                "model mismatch across ranks: parameter '1.weight' has shape 8x4 on rank 0 but 16x4 on rank 2");
    }
  }
  // A different number of layers.
  std::vector<torch::nn::Sequential> shallow{small_deep_mlp(8, 4), small_deep_mlp(8, 3)};
  const auto errors2 =
      t::run_ranks_collect(2, [&](Context& ctx) { DistributedDataParallel ddp(shallow[ctx.rank()], ctx.world()); });
  for (int r = 0; r < 2; ++r) {
    ASSERT_TRUE(errors2[r]);
    try {
      std::rethrow_exception(errors2[r]);
    } catch (const loom::ModelError& e) {
      EXPECT_EQ(std::string(e.what()),
                "model mismatch across ranks: parameter '5.weight' has shape 8x8 on rank 0 but 3x8 on rank 1");
    }
  }
}

TEST(DistributedDataParallel, Fp16CompressionIsCloseToFp32) {
  const auto data = t::make_batches(kSteps, 12, kSample, kClasses);
  const auto ref = reference_run(mlp(), data, kSteps);
  DdpOptions options;
  options.compression = loom::dp::Compression::fp16;
  const auto results = run_equivalence({6, 6}, data, options);
  for (const auto& r : results) {
    const double rel = t::max_abs_diff(r, ref) / t::max_abs(ref);
    EXPECT_LE(rel, 1e-2);
    EXPECT_GT(rel, 0.0);  // it did go through fp16
  }
}

TEST(DistributedDataParallel, Bf16CompressionIsAConfigErrorWithGloo) {
  loom::DistEnv env;  // world size 1: no network
  auto ctx = Context::create(env);
  auto model = mlp();
  DdpOptions options;
  options.compression = loom::dp::Compression::bf16;
  EXPECT_THROW(DistributedDataParallel(model, ctx->world(), options), loom::ConfigError);
  EXPECT_EQ(loom::dp::parse_compression("fp16"), loom::dp::Compression::fp16);
  EXPECT_THROW(loom::dp::parse_compression("int8"), loom::ConfigError);
}

TEST(DistributedDataParallel, WorldSizeOneIsPlainTraining) {
  loom::DistEnv env;
  auto ctx = Context::create(env);
  const auto data = t::make_batches(3, 8, kSample, kClasses);
  const auto ref = reference_run(mlp(), data, 3);
  EXPECT_LE(t::max_abs_diff(ddp_run(*ctx, mlp(), data, {8}, 3), ref), 1e-6);
}

// Note [gradients as bucket views]: after a synchronised step every param.grad shares
// storage with a bucket (no copies), zero_grad() still works on it, and a gradient the
// user replaces by a new tensor is copied in and aliased again, with the same results.
TEST(DistributedDataParallel, GradientsLiveInTheBucketsAndReplacedGradientsStillReduce) {
  const auto data = t::make_batches(4, 8, kSample, kClasses);
  const auto ref = reference_run(mlp(), data, 4);
  std::vector<std::vector<at::Tensor>> results(2);
  t::run_ranks(2, [&](Context& ctx) {
    auto model = mlp();
    DistributedDataParallel ddp(model, ctx.world(), tiny_buckets());
    auto opt = sgd(*model);
    const int64_t off = 4 * ctx.rank();
    std::vector<const void*> homes;
    for (int s = 0; s < 4; ++s) {
      opt.zero_grad();
      ddp.set_weight(0.5);
      loss_of(model->forward(data.x[s].narrow(0, off, 4)), data.y[s].narrow(0, off, 4)).backward();
      if (s == 2) {
        // What a user's own code might do between backward and finish().
        for (auto& p : model->parameters()) p.mutable_grad() = p.grad().clone();
      }
      ddp.finish();
      std::vector<const void*> now;
      for (auto& p : model->parameters()) now.push_back(p.grad().data_ptr());
      if (s >= 1) {
        // Bucket storage is fixed after the rebuild at the end of step 0.
        if (!homes.empty()) {
          EXPECT_EQ(now, homes) << "step " << s;
        }
        homes = now;
      }
      opt.step();
    }
    // Every gradient lies inside one of the bucket buffers: the distinct storages are
    // exactly as many as the buckets.
    std::set<const void*> storages;
    for (auto& p : model->parameters()) storages.insert(p.grad().storage().data());
    EXPECT_EQ(storages.size(), ddp.bucket_plan().buckets.size());
    results[ctx.rank()] = t::snapshot(*model);
  });
  expect_all_close(results, ref);
}

}  // namespace
