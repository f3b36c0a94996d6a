// Mesh over real Gloo, ranks as threads: the documented rank layout, both subgroups
// work, and a world that does not fit the mesh is refused.
#include "loom/hybrid/mesh.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <mutex>

#include "loom/comm/context.h"
#include "loom/comm/group.h"
#include "loom/core/error.h"
#include "unit/dp/dp_testing.h"

namespace loom::hybrid {
namespace {

TEST(Mesh, LaysOutPipelinesAndStageGroupsAsDocumented) {
  std::mutex mu;
  std::vector<std::vector<int>> pipelines(6), stage_groups(6);
  std::vector<double> pipeline_sums(6), stage_sums(6);
  std::string description;
  dp::testing::run_ranks(6, [&](comm::Context& ctx) {
    Mesh mesh(ctx, {3, 2});  // 3 replicas x 2 stages
    EXPECT_EQ(mesh.replica(), ctx.rank() / 2);
    EXPECT_EQ(mesh.stage(), ctx.rank() % 2);
    EXPECT_EQ(mesh.rank_of(mesh.replica(), mesh.stage()), ctx.rank());
    EXPECT_EQ(mesh.pipeline().rank(), mesh.stage());
    EXPECT_EQ(mesh.stage_group().rank(), mesh.replica());
    // Each subgroup reduces over exactly its members.
    std::vector<at::Tensor> a{torch::full({1}, double(ctx.rank()), torch::kDouble)};
    mesh.pipeline().allreduce(a).wait();
    std::vector<at::Tensor> b{torch::full({1}, double(ctx.rank()), torch::kDouble)};
    mesh.stage_group().allreduce(b).wait();
    std::lock_guard<std::mutex> lock(mu);
    pipelines[ctx.rank()] = mesh.pipeline().global_ranks();
    stage_groups[ctx.rank()] = mesh.stage_group().global_ranks();
    pipeline_sums[ctx.rank()] = a[0].item<double>();
    stage_sums[ctx.rank()] = b[0].item<double>();
    if (ctx.rank() == 0) description = mesh.describe();
  });
  EXPECT_EQ(pipelines[3], (std::vector<int>{2, 3}));
  EXPECT_EQ(stage_groups[3], (std::vector<int>{1, 3, 5}));
  EXPECT_EQ(pipeline_sums[4], 4 + 5);
  EXPECT_EQ(stage_sums[4], 0 + 2 + 4);
  EXPECT_EQ(description, "dp 3 x pp 2: pipelines {0,1} {2,3} {4,5}; stage groups {0,2,4} {1,3,5}");
}

TEST(Mesh, RefusesAWorldThatIsNotDTimesP) {
  const auto errors = dp::testing::run_ranks_collect(3, [&](comm::Context& ctx) { Mesh mesh(ctx, {2, 2}); });
  for (const auto& e : errors) {
    ASSERT_TRUE(e);
    try {
      std::rethrow_exception(e);
    } catch (const ConfigError& x) {
      EXPECT_NE(std::string(x.what()).find("--dp 2 x --pp 2 needs 4 processes, but the job has 3"), std::string::npos)
          << x.what();
    }
  }
}

}  // namespace
}  // namespace loom::hybrid
