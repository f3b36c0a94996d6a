// The planner's cost model against hand-computed steps on a hand-written profile and
// cluster: the whole step for one process, buckets added or hidden behind backward, ZeRO's
// shares, the pipeline simulation, stashed activations per schedule, memory that does
// not fit, and the plans and their `loom train` arguments.
#include "loom/plan/cost_model.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "loom/pipeline/schedule.h"

namespace {

using namespace loom::plan;

constexpr int64_t kLayerBytes = 4'000'000;

// Four layers; at batch b each takes 1e-4 * b s forward and twice that backward, outputs
// 1000 * b bytes and holds 4 MB of parameters; SGD with momentum (state = parameters).
ModelProfile four_layers() {
  ModelProfile p;
  p.model = "four";
  p.sample_shape = {10};
  p.batches = {64, 8};
  for (int i = 0; i < 4; ++i) {
    LayerProfile l;
    l.name = std::to_string(i);
    l.param_count = kLayerBytes / 4;
    l.param_bytes = kLayerBytes;
    for (int64_t b : p.batches) l.times.push_back({b, 1e-4 * b, 2e-4 * b, 1000 * b});
    p.layers.push_back(l);
  }
  p.optimizer_s = 1e-3;
  p.optimizer_state_bytes = 4 * kLayerBytes;
  return p;
}

Cluster node(int cores) {
  Cluster c;
  c.name = "test";
  c.processes_per_node = 8;
  c.cores_per_node = cores;
  c.memory_per_node_bytes = int64_t{64} << 30;
  c.intra = {10e-6, 1e9};
  c.inter = c.intra;
  return c;
}

Job job(int64_t batch = 64, int max_processes = 4) {
  Job j;
  j.batch_size = batch;
  j.max_processes = max_processes;
  // Buckets as the reducer forms them: layer 3 alone (the first bucket's cap is 1 MiB),
  // layers 2 and 1 (8 MB within 9 MiB), layer 0.
  j.bucket_mb = 9;
  return j;
}

Plan allreduce(int n, int zero = 0) { return Plan::allreduce(n, zero); }

// The flat ring of cluster.h over N ranks.
double ring(const Cluster& c, int n, double bytes) {
  return 2 * (n - 1) * c.intra.latency_s + 2.0 * (n - 1) / n * bytes / c.intra.bandwidth_Bps;
}

TEST(ProfileAt, InterpolatesBetweenAndScalesBeyondTheProfiledBatches) {
  const ModelProfile p = four_layers();
  EXPECT_NEAR(p.layer_at(0, 32).forward_s, 32e-4, 1e-12);         // between 8 and 64: linear
  EXPECT_NEAR(p.layer_at(0, 128).backward_s, 2 * 128e-4, 1e-12);  // beyond: per sample
  EXPECT_EQ(p.layer_at(0, 2).output_bytes, 2000);
  EXPECT_NEAR(p.step_at(64), 4 * 3 * 64e-4 + 1e-3, 1e-12);  // no measured step: layers + optimizer
}

TEST(CostModel, OneProcessIsTheWholeStep) {
  const Prediction r = predict(Plan{}, job(), four_layers(), node(8));
  EXPECT_NEAR(r.step_s, four_layers().step_at(64), 1e-12);
  EXPECT_NEAR(r.samples_per_s, 64 / r.step_s, 1e-9);
  EXPECT_EQ(r.dominant, "compute");
}

TEST(CostModel, WithoutASpareCoreEveryBucketIsAdded) {
  const Cluster c = node(2);  // two busy processes, two cores: no overlap
  const Prediction r = predict(allreduce(2), job(), four_layers(), c);
  const double compute = 4 * 3 * 32e-4 + 1e-3;
  EXPECT_NEAR(r.compute_s, compute, 1e-12);
  EXPECT_NEAR(r.communication_s, 2 * ring(c, 2, kLayerBytes) + ring(c, 2, 2 * kLayerBytes), 1e-12);
  EXPECT_NEAR(r.step_s, r.compute_s + r.communication_s, 1e-12);
}

TEST(CostModel, WithASpareCoreBucketsHideBehindBackward) {
  // Backward at batch 32: 6.4 ms per layer, from layer 3 down. Each bucket starts when its
  // earliest layer is done and the previous bucket's allreduce has ended.
  auto exposed = [](const Cluster& c) {
    const double r4 = ring(c, 2, kLayerBytes), r8 = ring(c, 2, 2 * kLayerBytes);
    const double end0 = 6.4e-3 + r4;                   // layer 3
    const double end1 = std::max(end0, 19.2e-3) + r8;  // layers 2, 1
    const double end2 = std::max(end1, 25.6e-3) + r4;  // layer 0, at the end of backward
    return end2 - 25.6e-3;
  };
  const Cluster fast = node(8);
  const Prediction r = predict(allreduce(2), job(), four_layers(), fast);
  EXPECT_NEAR(r.communication_s, exposed(fast), 1e-12);
  EXPECT_LT(r.communication_s, 2 * ring(fast, 2, kLayerBytes) + ring(fast, 2, 2 * kLayerBytes));
  Cluster slow = fast;
  slow.intra.bandwidth_Bps = 2e8;  // 4 MB: 20 ms, longer than a layer's backward
  const Prediction s = predict(allreduce(2), job(), four_layers(), slow);
  EXPECT_NEAR(s.communication_s, exposed(slow), 1e-12);
}

TEST(CostModel, ZeroShardsStateAndGradientsAndAddsTheAllGather) {
  const Cluster c = node(2);
  const ModelProfile p = four_layers();
  const Prediction plain = predict(allreduce(4), job(), p, c);
  const Prediction z1 = predict(allreduce(4, 1), job(), p, c);
  const Prediction z2 = predict(allreduce(4, 2), job(), p, c);
  const int64_t params = 4 * kLayerBytes;
  EXPECT_EQ(plain.memory_bytes - z1.memory_bytes, params - params / 4);  // state: 1/N
  // Stage 2 keeps 1/N of the gradients plus two of the largest bucket, not 2x parameters.
  EXPECT_EQ(z1.memory_bytes - z2.memory_bytes, 2 * params - (params / 4 + 2 * 2 * kLayerBytes));
  // The optimizer step on 1/N; then the all-gather of the parameters (half the pair).
  EXPECT_NEAR(plain.compute_s - z1.compute_s, (1e-3 - 1e-3 / 4) * c.slowdown(4, 1), 1e-12);
  EXPECT_NEAR(z1.communication_s - plain.communication_s, 0.5 * c.reduce_scatter_all_gather_s(4, params), 1e-12);
}

TEST(CostModel, LayerTimesAreScaledToTheMeasuredWholeStep) {
  ModelProfile p = four_layers();
  p.step_s = {0.2, 0.02};  // batches 64 and 8: more than the layers' 0.0768 and 0.0096 (+ the optimizer's 1 ms)
  const Prediction r = predict(allreduce(2), job(), p, node(2));
  EXPECT_NEAR(r.compute_s, p.step_at(32), 1e-12);  // forward + backward scaled to the step, plus the optimizer
  Plan pipe = Plan::pipeline(2, 1, "gpipe", {2, 2});
  // One micro-batch: the chain of both stages (half the step each) and two messages.
  EXPECT_NEAR(predict(pipe, job(), p, node(8)).step_s, (0.2 - 1e-3) + 2 * node(8).p2p_s(64000, true) + 1e-3 / 2, 1e-12);
}

TEST(CostModel, CoresSharedSlowCompute) {
  const Prediction two = predict(allreduce(2), job(), four_layers(), node(2));
  const Prediction four = predict(allreduce(4), job(), four_layers(), node(2));
  EXPECT_DOUBLE_EQ(two.slowdown, 1.0);
  EXPECT_DOUBLE_EQ(four.slowdown, 2.0);
  EXPECT_NEAR(four.compute_s, (4 * 3 * 16e-4 + 1e-3) * 2, 1e-12);
}

TEST(CostModel, PipelineIsTheScheduleSimulation) {
  const Cluster c = node(8);
  Plan p = Plan::pipeline(2, 4, "1f1b", {2, 2});
  const Prediction r = predict(p, job(), four_layers(), c);
  loom::pipeline::StageCosts costs;
  costs.forward = {2 * 16e-4, 2 * 16e-4};
  costs.backward = {2 * 32e-4, 2 * 32e-4};
  costs.message = c.p2p_s(16000, true);
  const double makespan = loom::pipeline::simulate(loom::pipeline::ScheduleKind::one_f_one_b, 4, costs).makespan;
  EXPECT_NEAR(r.step_s, makespan + 1e-3 / 2, 1e-12);  // + one stage's half of the optimizer step
  EXPECT_GT(r.bubble_s, 0.0);
}

TEST(CostModel, GPipeStashesEveryMicroBatch1F1BAtMostTheStagesLeft) {
  Plan p = Plan::pipeline(2, 8, "gpipe", {2, 2});
  const Prediction g = predict(p, job(), four_layers(), node(8));
  p.schedule = "1f1b";
  const Prediction f = predict(p, job(), four_layers(), node(8));
  // Stage 0 stashes its input (10 floats) and two outputs (1000 bytes each) per row:
  // 8 rows per micro-batch, 8 micro-batches (GPipe) against 2 (1F1B).
  EXPECT_EQ(g.memory_bytes - f.memory_bytes, (8 - 2) * 8 * (40 + 2 * 1000));
}

TEST(CostModel, PlansThatDoNotFitAreMarkedAndRankedLast) {
  Cluster c = node(8);
  c.memory_per_node_bytes = 8 * (4 * kLayerBytes);  // 4 processes: 2 x parameters each
  const auto ranked = rank(job(), four_layers(), c);
  ASSERT_FALSE(ranked.empty());
  bool seen_unfit = false;
  for (const auto& r : ranked) {
    if (!r.prediction.fits) seen_unfit = true;
    if (seen_unfit) {
      EXPECT_FALSE(r.prediction.fits) << r.plan.degrees();
    }
  }
  EXPECT_TRUE(seen_unfit);
  EXPECT_TRUE(ranked.front().prediction.fits);
  for (size_t i = 1; i < ranked.size(); ++i) {
    if (ranked[i].prediction.fits == ranked[i - 1].prediction.fits) {
      EXPECT_LE(ranked[i].prediction.samples_per_s, ranked[i - 1].prediction.samples_per_s);
    }
  }
}

TEST(CostModel, LoomsOwnStepCostIsAddedFromTheNearestMeasurement) {
  Cluster c = node(8);
  const Prediction bare = predict(allreduce(3), job(), four_layers(), c);
  c.overheads = {{"single", 1, 0, 1, 1, 1e-3},
                 {"allreduce", 2, 0, 1, 1, 2e-3},
                 {"allreduce", 4, 0, 1, 1, 5e-3},
                 {"pipeline", 1, 0, 2, 2, 4e-3}};
  EXPECT_NEAR(predict(Plan{}, job(), four_layers(), c).step_s, four_layers().step_at(64) + 1e-3, 1e-12);
  const Prediction three = predict(allreduce(3), job(), four_layers(), c);  // N = 2 and 4 equally near: the first
  EXPECT_NEAR(three.step_s - bare.step_s, 2e-3, 1e-12);
  EXPECT_NEAR(three.framework_s, 2e-3, 1e-12);
  // A pipeline's is waiting on messages: per message, inside the simulation. The entry
  // (P = 2, M = 2: 4 ms) spread over the messages on its critical path when nothing
  // computes; a plan with the same degrees and no compute pays exactly the entry back.
  Plan p = Plan::pipeline(2, 2, "1f1b", {2, 2});
  ModelProfile idle = four_layers();
  for (auto& l : idle.layers) {
    for (auto& t : l.times) t.forward_s = t.backward_s = 0;
  }
  idle.optimizer_s = 0;
  Cluster no_link = c;
  no_link.intra = {0, 1e18};
  Cluster without = no_link;
  without.overheads.clear();
  EXPECT_NEAR(predict(p, job(), idle, no_link).step_s - predict(p, job(), idle, without).step_s, 4e-3, 1e-12);
  EXPECT_EQ(predict(p, job(), idle, no_link).framework_s, 0.0);
  // Hybrid: what its replicas' allreduce adds over one process, on top.
  p.strategy = "hybrid";
  p.workers = 2;
  EXPECT_NEAR(predict(p, job(), idle, no_link).framework_s, 2e-3 - 1e-3, 1e-12);
}

TEST(CostModel, LoomsOwnStepCostIsLinearInTheParameterTensors) {
  Cluster c = node(8);
  // Measured on models of 4 and 32 tensors: 1 ms + 50 us per tensor beyond 4.
  c.overheads = {{"allreduce", 2, 0, 1, 1, 1e-3, 4}, {"allreduce", 2, 0, 1, 1, 2.4e-3, 32}};
  ModelProfile p = four_layers();
  p.param_tensors = 18;
  EXPECT_NEAR(predict(allreduce(2), job(), p, c).framework_s, 1e-3 + 14 * 50e-6, 1e-12);
  p.param_tensors = 100;  // beyond: along the same line
  EXPECT_NEAR(predict(allreduce(2), job(), p, c).framework_s, 1e-3 + 96 * 50e-6, 1e-12);
  p.param_tensors = 0;  // not known: the nearest entry (the first)
  EXPECT_NEAR(predict(allreduce(2), job(), p, c).framework_s, 1e-3, 1e-12);
  c.overheads.pop_back();  // one model measured: its cost for any model
  p.param_tensors = 18;
  EXPECT_NEAR(predict(allreduce(2), job(), p, c).framework_s, 1e-3, 1e-12);
}

TEST(CostModel, ProcessSpeedsSlowTheSlowestWorkerAndMakeShardWeightsAutoACandidate) {
  Cluster c = node(8);
  const ModelProfile p = four_layers();
  const Prediction even = predict(allreduce(2), job(), p, c);
  // Nothing differs: no --shard-weights auto plan.
  for (const auto& plan : candidates(job(), p, c)) {
    EXPECT_FALSE(plan.shard_weights_auto) << plan.degrees();
  }
  c.process_speeds = {1.0, 0.5};
  // Equal shards: the step waits for worker 1, computing at half speed (32 rows each).
  const Prediction slowed = predict(allreduce(2), job(), p, c);
  EXPECT_NEAR(slowed.compute_s, 2 * (4 * 3 * 32e-4 + 1e-3), 1e-12);
  EXPECT_NEAR(slowed.compute_s, 2 * even.compute_s, 1e-12);
  // Rows where the forward + backward times meet, as the trainer's re-weighting settles:
  // 43 and 21 (12e-4 b s at b rows, worker 1 twice that: 51.6 ms against 50.4 ms; 42 and
  // 22: 52.8 ms on worker 1). The step adds the optimizer at worker 0's speed.
  Plan weighted = allreduce(2);
  weighted.shard_weights_auto = true;
  const Prediction w = predict(weighted, job(), p, c);
  EXPECT_NEAR(w.compute_s, 4 * 3 * 43e-4 + 1e-3, 1e-12);
  EXPECT_GT(w.samples_per_s, slowed.samples_per_s);
  const auto plans = candidates(job(), p, c);
  const auto it = std::find_if(plans.begin(), plans.end(), [](const Plan& q) { return q.shard_weights_auto; });
  ASSERT_NE(it, plans.end());
  EXPECT_EQ(it->strategy, "allreduce");
  EXPECT_EQ(it->zero, 0);
  const auto args = it->args(job());
  EXPECT_NE(std::find(args.begin(), args.end(), "auto"), args.end());
  EXPECT_NE(std::find(args.begin(), args.end(), "proportional"), args.end());
  // One process: rank 0's speed. A pipeline: stage s at rank s's speed.
  EXPECT_NEAR(predict(Plan{}, job(), p, c).step_s, p.step_at(64), 1e-12);
  c.process_speeds = {0.5};
  EXPECT_NEAR(predict(Plan{}, job(), p, c).step_s, 2 * p.step_at(64), 1e-12);
  Plan pipe = Plan::pipeline(2, 1, "gpipe", {2, 2});
  c.process_speeds = {1.0, 0.25};
  const Prediction slow_stage = predict(pipe, job(), p, c);
  c.process_speeds.clear();
  const Prediction fast_stages = predict(pipe, job(), p, c);
  // M = 1: stage 0 forward, stage 1 forward + backward, stage 0 backward; stage 1 four
  // times slower, its half of the optimizer step too (0.5 ms -> 2 ms).
  const double f = 2 * 64e-4, b = 2 * 128e-4;
  EXPECT_NEAR(slow_stage.step_s - fast_stages.step_s, 3 * (f + b) + 1.5e-3, 1e-9);
}

TEST(CostModel, ProcessSpeedsByRoleInPsAndInAMesh) {
  Cluster c = node(8);
  const ModelProfile p = four_layers();
  // ps 2 workers x 1 server: ranks 0, 1 work, rank 2 serves.
  const Prediction even = predict(Plan::ps(2, 1, "sync"), job(), p, c);
  c.process_speeds = {1.0, 1.0, 0.5};  // a slow server: its optimizer step takes twice as long
  const Prediction slow_server = predict(Plan::ps(2, 1, "sync"), job(), p, c);
  EXPECT_NEAR(slow_server.server_s, 2 * even.server_s, 1e-12);
  EXPECT_NEAR(slow_server.compute_s, even.compute_s, 1e-12);
  c.process_speeds = {1.0, 0.5, 1.0};  // a slow worker: sync waits for it, async reports rank 0's rate
  EXPECT_NEAR(predict(Plan::ps(2, 1, "sync"), job(), p, c).compute_s, 2 * even.compute_s, 1e-12);
  EXPECT_NEAR(predict(Plan::ps(2, 1, "async"), job(), p, c).compute_s, even.compute_s, 1e-12);
  // A 2 x 2 mesh: rank 1 is stage 1 of replica 0 (rank = replica * pp + stage). Only
  // stage 1 waits for it; everything slowed is slower still.
  Plan mesh = Plan::pipeline(2, 2, "1f1b", {2, 2});
  mesh.strategy = "hybrid";
  mesh.workers = 2;
  c.process_speeds = {1.0, 0.5, 1.0, 1.0};
  const double one_slow = predict(mesh, job(), p, c).step_s;
  c.process_speeds = {1.0, 1.0, 1.0, 0.5};  // stage 1 of replica 1: the same stage
  EXPECT_NEAR(predict(mesh, job(), p, c).step_s, one_slow, 1e-12);
  c.process_speeds = {0.5, 0.5, 0.5, 0.5};
  EXPECT_LT(one_slow, predict(mesh, job(), p, c).step_s);
  // Within calibration's noise (5%): no --shard-weights auto candidate.
  c.process_speeds = {1.0, 0.97};
  for (const auto& plan : candidates(job(), p, c)) {
    EXPECT_FALSE(plan.shard_weights_auto) << plan.degrees();
  }
}

TEST(CostModel, CandidatesCoverEveryStrategyWithTheirTrainArguments) {
  const auto plans = candidates(job(), four_layers(), node(8));
  for (const char* s : {"single", "allreduce", "ps", "pipeline", "hybrid"}) {
    EXPECT_TRUE(std::any_of(plans.begin(), plans.end(), [&](const Plan& p) { return p.strategy == s; })) << s;
  }
  for (const auto& p : plans) EXPECT_LE(p.processes(), 4) << p.degrees();
  EXPECT_EQ(allreduce(3, 1).args(job()),
            (std::vector<std::string>{"--strategy", "allreduce", "--nproc", "3", "--zero", "1"}));
  Plan h;
  h.strategy = "hybrid";
  h.workers = 2;
  h.stages = 2;
  h.micro_batches = 4;
  h.schedule = "gpipe";
  h.split = {3, 1};
  EXPECT_EQ(h.args(job()), (std::vector<std::string>{"--strategy", "hybrid", "--dp", "2", "--pp", "2", "--nproc", "4",
                                                     "--micro-batches", "4", "--schedule", "gpipe", "--split", "3,1"}));
  Job only = job();
  only.strategies = {"pipeline"};
  for (const auto& p : candidates(only, four_layers(), node(8))) EXPECT_EQ(p.strategy, "pipeline");
}

}  // namespace
