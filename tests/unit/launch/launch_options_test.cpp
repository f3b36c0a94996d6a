#include "loom/launch/launch_options.h"

#include <gtest/gtest.h>

#include "loom/core/error.h"

namespace loom::launch {
namespace {

LaunchOptions valid() {
  LaunchOptions o;
  o.command = {"true"};
  return o;
}

// The ConfigError message for `o`, or "" when it is valid.
std::string error_of(const LaunchOptions& o) {
  try {
    validate(o);
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
    return e.what();
  }
  return "";
}

TEST(ValidateLaunchOptions, AcceptsTheDefaultsWithACommand) {
  EXPECT_EQ(error_of(valid()), "");
  LaunchOptions multi = valid();
  multi.nnodes = 2;
  multi.node_rank = 1;
  multi.master_port = 29500;
  EXPECT_EQ(error_of(multi), "");
}

TEST(ValidateLaunchOptions, NamesTheFlagOfEachBadValue) {
  struct Case {
    std::function<void(LaunchOptions&)> change;
    std::string flag;
  };
  const std::vector<Case> cases = {
      {[](LaunchOptions& o) { o.nproc = 0; }, "--nproc"},
      {[](LaunchOptions& o) { o.nproc = -2; }, "--nproc"},
      {[](LaunchOptions& o) { o.nnodes = 0; }, "--nnodes"},
      {[](LaunchOptions& o) { o.node_rank = 1; }, "--node-rank"},
      {[](LaunchOptions& o) { o.node_rank = -1; }, "--node-rank"},
      {[](LaunchOptions& o) { o.master_addr = ""; }, "--master-addr"},
      {[](LaunchOptions& o) { o.master_port = 70000; }, "--master-port"},
      {[](LaunchOptions& o) { o.master_port = -1; }, "--master-port"},
      {[](LaunchOptions& o) { o.nnodes = 2; }, "--master-port"},  // port 0 across nodes
      {[](LaunchOptions& o) { o.max_restarts = -1; }, "--max-restarts"},
      {[](LaunchOptions& o) { o.stop_grace = std::chrono::milliseconds(-1); }, "--stop-grace"},
      {[](LaunchOptions& o) { o.command.clear(); }, "--"},
      {[](LaunchOptions& o) { o.command = {""}; }, "--"},
  };
  for (const auto& c : cases) {
    LaunchOptions o = valid();
    c.change(o);
    const std::string message = error_of(o);
    EXPECT_NE(message.find(c.flag), std::string::npos) << "expected " << c.flag << " in: " << message;
  }
}

TEST(LaunchOptions, GlobalRanks) {
  LaunchOptions o;
  o.nproc = 4;
  o.nnodes = 3;
  o.node_rank = 2;
  EXPECT_EQ(o.world_size(), 12);
  EXPECT_EQ(o.global_rank(0), 8);
  EXPECT_EQ(o.global_rank(3), 11);
}

}  // namespace
}  // namespace loom::launch
