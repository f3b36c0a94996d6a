// Communication hooks (loom/dp/grad_compression.h): a user's hook against the default, the
// built-in fp16 hook against the compression option, a hook whose Work fails, and when
// a hook may be registered. Ranks are threads (dp_testing.h).
#include "loom/dp/grad_compression.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <numeric>
#include <string>
#include <vector>

#include "loom/comm/group.h"
#include "loom/core/error.h"
#include "loom/dp/distributed_data_parallel.h"
#include "loom/models/registry.h"
#include "unit/dp/dp_testing.h"

namespace {

using loom::comm::Context;
using loom::comm::Group;
using loom::comm::Work;
using loom::dp::CommHook;
using loom::dp::DdpOptions;
using loom::dp::DistributedDataParallel;
using loom::dp::GradBucket;
namespace t = loom::dp::testing;

constexpr int kSteps = 6;

struct Init {
  Init() { torch::set_num_threads(1); }
} init;

// deep-mlp 4 -> 8 -> 8 -> 8 -> 3 with 64-byte / 256-byte caps: 6 buckets.
torch::nn::Sequential small_deep_mlp() {
  loom::models::ModelOptions o;
  o.sample_shape = {1, 2, 2};
  o.num_classes = 3;
  o.width = 8;
  o.depth = 4;
  return loom::models::make_model("deep-mlp", o);
}

DdpOptions tiny_buckets() {
  DdpOptions o;
  o.first_bucket_mb = 64.0 / (1 << 20);
  o.bucket_cap_mb = 256.0 / (1 << 20);
  return o;
}

struct RankResult {
  std::vector<at::Tensor> params;
  std::vector<std::vector<size_t>> calls;  // per step: the bucket indices the hook saw, in order
  std::vector<size_t> buckets;             // per step: the number of buckets
  Group::AllreduceCounts allreduces;       // issued during the steps
  bool shared_memory = false;              // whether the group has the shared-memory path
};

// Two ranks with uneven shares (5 and 3 of 8 samples); `hook` (if any) is registered
// before the first backward, and every call is recorded.
std::vector<RankResult> run_two_ranks(const t::Batches& data, DdpOptions options, CommHook hook = {}) {
  std::vector<torch::nn::Sequential> models{small_deep_mlp(), small_deep_mlp()};
  std::vector<RankResult> results(2);
  t::run_ranks(2, [&](Context& ctx) {
    const int r = ctx.rank();
    const int64_t off = r == 0 ? 0 : 5, n = r == 0 ? 5 : 3;
    RankResult& out = results[r];
    auto model = models[r];
    DistributedDataParallel ddp(model, ctx.world(), options);
    if (hook) {
      ddp.register_comm_hook([&out, hook](Group& group, const GradBucket& bucket) {
        out.calls.back().push_back(bucket.index);
        // The bucket describes itself: each parameter's gradient is its slice of the buffer.
        for (size_t i = 0; i < bucket.parameters.size(); ++i) {
          EXPECT_EQ(bucket.parameters[i].grad().data_ptr<float>(), bucket.buffer.data_ptr<float>() + bucket.offsets[i]);
        }
        return hook(group, bucket);
      });
    }
    torch::optim::SGD opt(model->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
    const auto before = ctx.world().allreduce_counts();
    for (int s = 0; s < kSteps; ++s) {
      out.calls.emplace_back();
      out.buckets.push_back(ddp.bucket_plan().buckets.size());
      opt.zero_grad();
      ddp.set_weight(double(n) / 8);
      torch::nn::functional::cross_entropy(model->forward(data.x[s].narrow(0, off, n)), data.y[s].narrow(0, off, n))
          .backward();
      ddp.finish();
      opt.step();
    }
    const auto after = ctx.world().allreduce_counts();
    out.allreduces = {after.shared_memory - before.shared_memory, after.c10d - before.c10d};
    out.shared_memory = ctx.world().uses_shared_memory();
    out.params = t::snapshot(*model);
  });
  return results;
}

// A user's hook: scales by 2, reduces with an explicit Group allreduce, then scales the
// sum back in a step after it (Work::then). Powers of two: the same sum, bit for bit.
Work scale_reduce_unscale(Group& group, const GradBucket& bucket) {
  bucket.buffer.mul_(2);
  std::vector<at::Tensor> io{bucket.buffer};
  return group.allreduce(io).then([buffer = bucket.buffer] { buffer.mul_(0.5); });
}

std::vector<size_t> iota(size_t n) {
  std::vector<size_t> v(n);
  std::iota(v.begin(), v.end(), size_t{0});
  return v;
}

TEST(CommHooks, AUserHookEqualsTheDefaultAndRunsOncePerBucketPerStep) {
  const auto data = t::make_batches(kSteps, 8, {1, 2, 2}, 3);
  const auto reference = run_two_ranks(data, tiny_buckets());
  const auto hooked = run_two_ranks(data, tiny_buckets(), scale_reduce_unscale);
  for (int r = 0; r < 2; ++r) {
    EXPECT_LE(t::max_abs_diff(hooked[r].params, reference[r].params), 1e-6) << "rank " << r;
    ASSERT_EQ(hooked[r].calls.size(), size_t(kSteps));
    for (int s = 0; s < kSteps; ++s) {
      EXPECT_GE(hooked[r].buckets[s], 5u);
      EXPECT_EQ(hooked[r].calls[s], iota(hooked[r].buckets[s])) << "rank " << r << ", step " << s;
    }
  }
  // The default hook is the allreduce the reducer always issued: one per bucket per
  // step, float buckets through shared memory when the group has it.
  for (int r = 0; r < 2; ++r) {
    int64_t buckets = 0;
    for (size_t n : reference[r].buckets) buckets += static_cast<int64_t>(n);
    EXPECT_EQ(reference[r].allreduces.shared_memory, reference[r].shared_memory ? buckets : 0);
    EXPECT_EQ(reference[r].allreduces.c10d, reference[r].shared_memory ? 0 : buckets);
    EXPECT_EQ(hooked[r].allreduces.shared_memory + hooked[r].allreduces.c10d, buckets);
  }
}

TEST(CommHooks, TheBuiltInFp16HookIsTheCompressionOption) {
  const auto data = t::make_batches(kSteps, 8, {1, 2, 2}, 3);
  auto fp16 = tiny_buckets();
  fp16.compression = loom::dp::Compression::fp16;
  const auto by_option = run_two_ranks(data, fp16);
  const auto by_hook = run_two_ranks(data, tiny_buckets(), loom::dp::hooks::fp16_compress());
  const auto plain = run_two_ranks(data, tiny_buckets());
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(t::max_abs_diff(by_hook[r].params, by_option[r].params), 0.0) << "rank " << r;
    EXPECT_GT(t::max_abs_diff(by_option[r].params, plain[r].params), 0.0) << "rank " << r << ": not through fp16";
    EXPECT_LE(t::max_abs_diff(by_option[r].params, plain[r].params), 1e-2 * t::max_abs(plain[r].params));
    EXPECT_EQ(by_option[r].allreduces.shared_memory, 0) << "fp16 buckets go through Gloo";
  }
}

TEST(CommHooks, AHookWhoseWorkFailsMakesFinishThrowOnEveryRank) {
  const auto data = t::make_batches(2, 8, {1, 2, 2}, 3);
  std::vector<torch::nn::Sequential> models{small_deep_mlp(), small_deep_mlp()};
  std::vector<std::string> messages(2);
  std::vector<int> calls(2, 0);
  t::run_ranks(2, [&](Context& ctx) {
    const int r = ctx.rank();
    auto model = models[r];
    DistributedDataParallel ddp(model, ctx.world(), tiny_buckets());
    ddp.register_comm_hook([&calls, r](Group& group, const GradBucket& bucket) {
      ++calls[r];
      std::vector<at::Tensor> io{bucket.buffer};
      // Every rank issues the same collectives, and every bucket's Work then fails.
      return group.allreduce(io).then([index = bucket.index] {
        throw std::runtime_error("decompression of bucket " + std::to_string(index) + " failed");
      });
    });
    auto loss = torch::nn::functional::cross_entropy(model->forward(data.x[0].narrow(0, 4 * r, 4)),
                                                     data.y[0].narrow(0, 4 * r, 4));
    EXPECT_NO_THROW(loss.backward());  // the failure is finish()'s to report
    try {
      ddp.finish();
      ADD_FAILURE() << "rank " << r << ": finish() returned normally";
    } catch (const loom::CommError& e) {
      messages[r] = e.what();
    }
  });
  for (int r = 0; r < 2; ++r) {
    EXPECT_GE(calls[r], 5);
    EXPECT_EQ(messages[r], "continuation of allreduce on group 'world' failed: decompression of bucket 0 failed")
        << "rank " << r;
  }
}

TEST(CommHooks, AHookIsRegisteredOnceBeforeTheFirstSynchronisedBackward) {
  loom::DistEnv env;  // world size 1: no network
  auto ctx = Context::create(env);
  const auto data = t::make_batches(1, 4, {1, 2, 2}, 3);
  auto step = [&](torch::nn::Sequential& model, DistributedDataParallel& ddp) {
    torch::nn::functional::cross_entropy(model->forward(data.x[0]), data.y[0]).backward();
    ddp.finish();
  };
  int calls = 0;
  auto counting = [&calls](Group& group, const GradBucket& bucket) {
    ++calls;
    return loom::dp::hooks::allreduce()(group, bucket);
  };
  {
    auto model = small_deep_mlp();
    DistributedDataParallel ddp(model, ctx->world(), tiny_buckets());
    EXPECT_THROW(ddp.register_comm_hook({}), loom::ConfigError);
    {
      auto guard = ddp.no_sync();  // accumulation does not communicate: still in time
      torch::nn::functional::cross_entropy(model->forward(data.x[0]), data.y[0]).backward();
    }
    ddp.register_comm_hook(counting);
    EXPECT_THROW(ddp.register_comm_hook(counting), loom::ConfigError);  // once
    step(model, ddp);
    EXPECT_EQ(calls, static_cast<int>(ddp.bucket_plan().buckets.size()));
  }
  {
    auto model = small_deep_mlp();
    DistributedDataParallel ddp(model, ctx->world(), tiny_buckets());
    step(model, ddp);
    try {
      ddp.register_comm_hook(counting);
      ADD_FAILURE() << "registered after the first synchronised backward";
    } catch (const loom::ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("before the first synchronised backward"), std::string::npos) << e.what();
    }
  }
  {
    auto model = small_deep_mlp();
    auto options = tiny_buckets();
    options.compression = loom::dp::Compression::fp16;
    DistributedDataParallel ddp(model, ctx->world(), options);
    EXPECT_THROW(ddp.register_comm_hook(counting), loom::ConfigError);  // compression chose a hook already
  }
  EXPECT_THROW(loom::dp::hooks::bf16_compress(), loom::ConfigError);
}

}  // namespace

// Note [last bucket from finish]: over shared memory the autograd hooks launch every
// bucket but the last, which finish() launches (and then runs on its own thread); over
// Gloo the hooks launch them all.
// Note [last bucket from finish]: with the default hook over shared memory, finish()
// launches the last bucket (the allreduces counted after backward are one short of those
// after finish); over Gloo, and with a registered hook (which may send the bucket
// anywhere), the autograd hook launches every bucket.
TEST(CommHooks, OverSharedMemoryFinishLaunchesTheLastBucket) {
  const auto data = t::make_batches(1, 8, {1, 2, 2}, 3);
  for (bool shared_memory : {true, false}) {
    for (bool registered : {false, true}) {
      std::vector<torch::nn::Sequential> models{small_deep_mlp(), small_deep_mlp()};
      std::vector<int64_t> after_backward(2), after_finish(2);
      std::vector<bool> used(2);
      auto options = loom::test::with_timeout(std::chrono::seconds(30));
      options.shared_memory = shared_memory;
      const auto errors = loom::test::run_thread_ranks(
          2,
          [&](Context& ctx) {
            const int r = ctx.rank();
            auto model = models[r];
            DistributedDataParallel ddp(model, ctx.world(), tiny_buckets());
            if (registered) ddp.register_comm_hook(loom::dp::hooks::allreduce());
            auto launched = [&] {
              const auto c = ctx.world().allreduce_counts();
              return c.shared_memory + c.c10d;
            };
            const int64_t before = launched();
            torch::nn::functional::cross_entropy(model->forward(data.x[0].narrow(0, 4 * r, 4)),
                                                 data.y[0].narrow(0, 4 * r, 4))
                .backward();
            after_backward[r] = launched() - before;
            ddp.finish();
            after_finish[r] = launched() - before;
            used[r] = ctx.world().uses_shared_memory();
          },
          options);
      for (const auto& e : errors) {
        if (e) std::rethrow_exception(e);
      }
      for (int r = 0; r < 2; ++r) {
        const bool deferred = shared_memory && !registered;
        EXPECT_EQ(used[r], shared_memory) << "rank " << r;
        EXPECT_GE(after_finish[r], 5) << "rank " << r;
        EXPECT_EQ(after_backward[r], deferred ? after_finish[r] - 1 : after_finish[r])
            << "rank " << r << (shared_memory ? ", shared memory" : ", Gloo")
            << (registered ? ", registered hook" : ", default hook");
      }
    }
  }
}
