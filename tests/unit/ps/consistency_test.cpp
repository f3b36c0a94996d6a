// The consistency rules on their own (no server, no sockets): when a push becomes an
// update, what the update applies, when a pull is answered, and the sync step timeout on a
// clock the test advances.
#include "loom/ps/consistency.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "loom/core/error.h"
#include "unit/ps/ps_testing.h"

namespace loom::ps {
namespace {

using namespace loom::ps::testing;

ConsistencyOptions rule_options(Consistency mode, int workers, int staleness = 0, ServerClock clock = {}) {
  ConsistencyOptions o;
  o.mode = mode;
  o.num_workers = workers;
  o.staleness = staleness;
  o.step_timeout = 30s;
  o.clock = std::move(clock);
  o.who = "parameter server 3";
  return o;
}

Slot make_slot() {
  Slot slot;
  slot.param = torch::zeros({4});
  slot.combined = torch::zeros({4});
  return slot;
}

at::Tensor grad(int worker) { return torch::arange(4, torch::kFloat).mul(0.3 + worker).sin(); }

TEST(PsConsistency, ParseAndName) {
  for (auto c : {Consistency::sync, Consistency::async, Consistency::ssp}) {
    EXPECT_EQ(parse_consistency(consistency_name(c)), c);
  }
  EXPECT_THROW(parse_consistency("eventual"), ConfigError);
  EXPECT_EQ(make_consistency_rule(rule_options(Consistency::ssp, 2, 3))->describe(), "ssp mode, staleness 3");
  EXPECT_THROW(make_consistency_rule(rule_options(Consistency::ssp, 2, -1)), ConfigError);
}

TEST(PsConsistencySync, AnUpdateOncePerStepSummedInWorkerOrder) {
  auto rule = make_consistency_rule(rule_options(Consistency::sync, 3));
  Slot slot = make_slot();
  rule->add_key(7, slot);
  const Liveness workers(3, 30s, 100s, {});
  EXPECT_TRUE(rule->ack_before_update());
  EXPECT_TRUE(rule->values_stable_while_sent());
  EXPECT_FALSE(rule->drops_silent_workers());
  // Pushes arrive as 2, 0, 1: only the last makes the update due, summed as 0, 1, 2.
  EXPECT_FALSE(rule->push(7, slot, 2, 0, 0.25, grad(2)).update);
  EXPECT_FALSE(rule->push(7, slot, 0, 0, 0.5, grad(0)).update);
  EXPECT_EQ(rule->push(7, slot, 0, 0, 0.5, grad(0)).refusal, "key 7: worker 0 pushed step 0 twice");
  EXPECT_EQ(rule->push(7, slot, 1, 1, 0.25, grad(1)).refusal,
            "key 7: push for step 1 while the server is at step 0 (sync mode)");
  EXPECT_FALSE(rule->ready(7, slot, 1, workers));
  const PushResult last = rule->push(7, slot, 1, 0, 0.25, grad(1));
  EXPECT_EQ(last.refusal, "");
  EXPECT_TRUE(last.update);
  EXPECT_TRUE(torch::equal(slot.combined, grad(0).mul(0.5).add_(grad(1), 0.25).add_(grad(2), 0.25)));
  slot.version = 1;  // the server's update
  EXPECT_TRUE(rule->ready(7, slot, 1, workers));
  EXPECT_TRUE(rule->ready(7, slot, 0, workers));
  EXPECT_FALSE(rule->ready(7, slot, 2, workers));
  EXPECT_FALSE(rule->push(7, slot, 0, 1, 0.5, grad(0)).update) << "a new step starts empty";
}

TEST(PsConsistencySync, EarlyPushesAreSummedAndReleasedBeforeTheLastArrives) {
  auto rule = make_consistency_rule(rule_options(Consistency::sync, 3));
  Slot slot = make_slot();
  rule->add_key(7, slot);
  const at::Tensor g0 = grad(0), g1 = grad(1), g2 = grad(2);
  // Worker 1 first: it cannot be summed before worker 0, so the rule keeps it.
  EXPECT_FALSE(rule->push(7, slot, 1, 0, 0.25, g1).update);
  EXPECT_TRUE(torch::equal(slot.combined, torch::zeros({4})));
  EXPECT_EQ(g1.use_count(), 2) << "worker 1's push is kept until worker 0's is in";
  // Worker 0: both are summed now, in worker order, and neither is kept.
  EXPECT_FALSE(rule->push(7, slot, 0, 0, 0.5, g0).update);
  EXPECT_TRUE(torch::equal(slot.combined, g0.mul(0.5).add_(g1, 0.25)));
  EXPECT_EQ(g0.use_count(), 1);
  EXPECT_EQ(g1.use_count(), 1);
  EXPECT_TRUE(rule->push(7, slot, 2, 0, 0.25, g2).update);
  EXPECT_TRUE(torch::equal(slot.combined, g0.mul(0.5).add_(g1, 0.25).add_(g2, 0.25)));
  EXPECT_EQ(g2.use_count(), 1);
  // The next step starts its sum again from worker 0.
  slot.version = 1;
  EXPECT_FALSE(rule->push(7, slot, 0, 1, 0.5, g2).update);
  EXPECT_TRUE(torch::equal(slot.combined, g2.mul(0.5)));
}

TEST(PsConsistencySync, AStepIncompleteBeyondTheTimeoutNamesTheMissingWorkers) {
  ManualClock clock;
  auto rule = make_consistency_rule(rule_options(Consistency::sync, 3, 0, clock.clock()));
  Slot slot = make_slot();
  rule->add_key(5, slot);
  EXPECT_NO_THROW(rule->check_progress()) << "no push yet";
  clock.advance(100s);
  EXPECT_NO_THROW(rule->check_progress()) << "no push yet";
  rule->push(5, slot, 1, 0, 0.5, grad(1));
  clock.advance(30s);
  EXPECT_NO_THROW(rule->check_progress()) << "exactly the timeout";
  clock.advance(1ms);
  try {
    rule->check_progress();
    ADD_FAILURE() << "no error after the timeout";
  } catch (const CommError& e) {
    EXPECT_EQ(std::string(e.what()),
              "parameter server 3: step 0 of key 5: no push from worker 0, 2 within 30 s (sync mode)");
  }
}

TEST(PsConsistencyAsync, EveryPushIsAnUpdateScaledByItsWeightAndPullsAreAnsweredAtOnce) {
  auto rule = make_consistency_rule(rule_options(Consistency::async, 2));
  Slot slot = make_slot();
  rule->add_key(0, slot);
  const Liveness workers(2, 30s, 100s, {});
  EXPECT_FALSE(rule->ack_before_update());
  EXPECT_FALSE(rule->values_stable_while_sent());
  EXPECT_TRUE(rule->drops_silent_workers());
  const PushResult r = rule->push(0, slot, 1, 5, 0.25, grad(1));
  EXPECT_TRUE(r.update);
  EXPECT_EQ(r.refusal, "");
  EXPECT_TRUE(torch::equal(slot.combined, grad(1).mul(0.25)));
  EXPECT_TRUE(rule->ready(0, slot, 1000, workers));
}

TEST(PsConsistencySsp, APullWaitsForCountedWorkersWithinTheStaleness) {
  ManualClock clock;
  auto rule = make_consistency_rule(rule_options(Consistency::ssp, 3, 1));
  Slot slot = make_slot();
  rule->add_key(0, slot);
  rule->add_key(1, slot);
  Liveness workers(3, 30s, 100s, clock.clock());
  EXPECT_TRUE(rule->ready(0, slot, 1, workers)) << "clock 1 needs 0 steps";
  for (int t = 0; t < 3; ++t) EXPECT_TRUE(rule->push(0, slot, 0, t, 0.5, grad(0)).update);
  rule->push(0, slot, 1, 0, 0.5, grad(1));
  EXPECT_FALSE(rule->ready(0, slot, 2, workers)) << "worker 2 has pushed nothing";
  rule->push(0, slot, 2, 0, 0.5, grad(2));
  EXPECT_TRUE(rule->ready(0, slot, 2, workers)) << "every worker has pushed 1 step";
  EXPECT_FALSE(rule->ready(0, slot, 3, workers)) << "workers 1 and 2 have pushed 1 step";
  EXPECT_FALSE(rule->ready(1, slot, 2, workers)) << "steps are counted per key";
  // Workers that are done or dropped no longer hold anyone back.
  workers.done(1);
  EXPECT_FALSE(rule->ready(0, slot, 3, workers));
  clock.advance(31s);
  workers.heard_from(0);
  EXPECT_EQ(workers.drop_silent([](size_t) { return false; }), std::vector<size_t>({2}));
  EXPECT_TRUE(rule->ready(0, slot, 3, workers));
  EXPECT_FALSE(rule->ready(0, slot, 5, workers)) << "worker 0 itself has pushed 3 steps";
}

}  // namespace
}  // namespace loom::ps
