// Work::then: a step after an operation, run by wait(), with Work's error contract
// (every wait() after a failure throws the same error again).
#include "loom/comm/work.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <stdexcept>
#include <string>
#include <thread>

#include "loom/comm/context.h"
#include "loom/comm/group.h"
#include "loom/core/error.h"
#include "unit/dp/dp_testing.h"

namespace {

using loom::comm::Context;
using loom::comm::Work;

TEST(Work, ThenRunsOnceAfterTheOperationOnTheWaitingThread) {
  loom::dp::testing::run_ranks(2, [&](Context& ctx) {
    std::vector<at::Tensor> io{torch::full({1000}, float(ctx.rank() + 1))};
    at::Tensor seen = torch::zeros({1000});
    int runs = 0;
    std::thread::id ran_on;
    Work work = ctx.world().allreduce(io).then([&] {
      ++runs;
      ran_on = std::this_thread::get_id();
      seen.copy_(io[0]);  // what the allreduce wrote
    });
    EXPECT_EQ(runs, 0);  // not before wait()
    work.wait();
    work.wait();  // a second wait returns at once and does not run it again
    EXPECT_EQ(runs, 1);
    EXPECT_EQ(ran_on, std::this_thread::get_id());
    EXPECT_TRUE(torch::equal(seen, torch::full({1000}, 3.0f)));
    EXPECT_TRUE(work.completed());
  });
}

TEST(Work, ThenOnACompleteWorkStillWaitsForWait) {
  int runs = 0;
  Work work = Work::done().then([&] { ++runs; });
  EXPECT_TRUE(work.completed());
  bool called = false;
  work.on_completion([&] { called = true; });  // the operation (none) is complete: at once
  EXPECT_TRUE(called);
  EXPECT_EQ(runs, 0);
  work.wait();
  EXPECT_EQ(runs, 1);
  EXPECT_EQ(work.source_rank(), -1);
}

TEST(Work, AFailedStepFailsEveryWaitAndWhatFollowsNeverRuns) {
  int runs = 0;
  Work failing = Work::done().then([] { throw std::runtime_error("cast back failed"); });
  Work after = Work(failing).then([&] { ++runs; });
  for (int attempt = 0; attempt < 3; ++attempt) {
    try {
      failing.wait();
      ADD_FAILURE() << "wait() " << attempt << " returned normally after a failure";
    } catch (const loom::CommError& e) {
      EXPECT_EQ(std::string(e.what()), "continuation of a communication failed: cast back failed");
    }
  }
  for (int attempt = 0; attempt < 2; ++attempt) {
    EXPECT_THROW(after.wait(), loom::CommError) << "attempt " << attempt;
  }
  EXPECT_EQ(runs, 0);
  // A loom::Error from the step keeps its type.
  Work timeout = Work::done().then([] { throw loom::TimeoutError("late"); });
  EXPECT_THROW(timeout.wait(), loom::TimeoutError);
  EXPECT_THROW(timeout.wait(), loom::TimeoutError);
}

TEST(Work, ThenAfterAnAllreduceIsNamedAfterIt) {
  loom::dp::testing::run_ranks(2, [&](Context& ctx) {
    std::vector<at::Tensor> io{torch::ones({4})};
    Work work = ctx.world().allreduce(io).then([] { throw std::runtime_error("boom"); });
    for (int attempt = 0; attempt < 2; ++attempt) {
      try {
        work.wait();
        ADD_FAILURE() << "returned normally";
      } catch (const loom::CommError& e) {
        EXPECT_EQ(std::string(e.what()), "continuation of allreduce on group 'world' failed: boom");
      }
    }
  });
}

}  // namespace
