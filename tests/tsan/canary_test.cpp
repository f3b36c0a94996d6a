// The ThreadSanitizer run's own check (`make test-tsan`, tests/tsan/check_canary.sh):
// built only with -DLOOM_SANITIZE=thread, never by ctest.
//
// tests/tsan.supp and the annotations (src/loom/core/tsan.h) must not blind TSan to
// loom's own races on the communication threads. Each case runs 2 ranks that allreduce
// and count in a completion callback. In the Racy cases the rank thread also counts
// while the callback may run: a real race, which TSan must report (the check expects
// exit code 66 and a report naming this file). In the Ordered cases it counts after
// wait(): ordered through the annotations, which TSan must accept (exit 0). Gloo cases
// use int64 tensors (Gloo's thread runs the callback), Shm cases float (the
// shared-memory engine's thread).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <memory>
#include <vector>

#include "loom/comm/context.h"
#include "loom/comm/group.h"
#include "unit/dp/dp_testing.h"

namespace {

using loom::comm::Context;

void count_beside_callbacks(Context& ctx, at::ScalarType type, bool racy) {
  auto count = std::make_shared<int64_t>(0);
  for (int i = 0; i < 20; ++i) {
    std::vector<at::Tensor> t{torch::ones({1 << 16}, torch::TensorOptions().dtype(type))};
    auto work = ctx.world().allreduce(t);
    work.on_completion([count] { *count += 1; });  // TSAN-CANARY-CALLBACK
    if (racy) *count += 1;                         // concurrent with the callback
    work.wait();
    if (!racy) *count += 1;  // after wait(): ordered
  }
  EXPECT_GE(*count, 20);
}

void run(at::ScalarType type, bool racy) {
  loom::dp::testing::run_ranks(2, [&](Context& ctx) { count_beside_callbacks(ctx, type, racy); });
}

TEST(TsanCanary, RacyGloo) { run(at::kLong, true); }
TEST(TsanCanary, RacyShm) { run(at::kFloat, true); }
TEST(TsanCanary, OrderedGloo) { run(at::kLong, false); }
TEST(TsanCanary, OrderedShm) { run(at::kFloat, false); }

}  // namespace
