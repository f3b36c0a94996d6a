// Two hosts on one machine: two network namespaces joined by a veth pair, each with its
// own address. A 2-node allreduce job (`loom run --nnodes 2`, one worker per node)
// trains across the link; then the link is cut mid-run and both nodes must end with an
// error naming the timed-out operation and the silent peer, within the timeout.
// Needs root (ip netns); skipped with a message otherwise.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <memory>

#include "support/process.h"
#include "support/train_runs.h"

namespace {

using loom::test::Process;
using loom::test::RunOptions;

int sh(const std::string& command) { return std::system(command.c_str()); }

// The namespaces and the link; removed on destruction whatever happened.
class TwoHosts {
 public:
  TwoHosts() {
    const int id = static_cast<int>(::getpid() % 100000);
    a_ = "loomA" + std::to_string(id);
    b_ = "loomB" + std::to_string(id);
    const std::string va = "lva" + std::to_string(id), vb = "lvb" + std::to_string(id);
    const int net = 10 + static_cast<int>(::getpid() % 200);
    addr_a_ = "10.231." + std::to_string(net) + ".1";
    addr_b_ = "10.231." + std::to_string(net) + ".2";
    link_a_ = va;
    ok_ = sh("set -e; ip netns add " + a_ + "; ip netns add " + b_ + "; ip link add " + va + " type veth peer name " +
             vb + "; ip link set " + va + " netns " + a_ + "; ip link set " + vb + " netns " + b_ + "; ip -n " + a_ +
             " addr add " + addr_a_ + "/24 dev " + va + "; ip -n " + b_ + " addr add " + addr_b_ + "/24 dev " + vb +
             "; ip -n " + a_ + " link set " + va + " up; ip -n " + b_ + " link set " + vb + " up; ip -n " + a_ +
             " link set lo up; ip -n " + b_ + " link set lo up") == 0;
  }
  ~TwoHosts() { sh("ip netns del " + a_ + " 2>/dev/null; ip netns del " + b_ + " 2>/dev/null"); }
  bool ok() const { return ok_; }
  // Takes host A's end of the link down: packets stop, nothing is reset.
  bool cut() const { return sh("ip -n " + a_ + " link set " + link_a_ + " down") == 0; }
  std::vector<std::string> on_a() const { return {"ip", "netns", "exec", a_}; }
  std::vector<std::string> on_b() const { return {"ip", "netns", "exec", b_}; }
  const std::string& addr_a() const { return addr_a_; }

 private:
  std::string a_, b_, link_a_, addr_a_, addr_b_;
  bool ok_ = false;
};

RunOptions node(const TwoHosts& hosts, int node_rank, const std::string& master, int port) {
  RunOptions o;
  o.argv = node_rank == 0 ? hosts.on_a() : hosts.on_b();
  for (const std::string& a : {std::string(LOOM_BINARY),
                               std::string("run"),
                               std::string("--nnodes"),
                               std::string("2"),
                               std::string("--node-rank"),
                               std::to_string(node_rank),
                               std::string("--nproc"),
                               std::string("1"),
                               std::string("--master-addr"),
                               master,
                               std::string("--master-port"),
                               std::to_string(port),
                               std::string("--"),
                               std::string(LOOM_BINARY),
                               std::string("train"),
                               std::string("--strategy"),
                               std::string("allreduce"),
                               std::string("--model"),
                               std::string("mlp"),
                               std::string("--data"),
                               std::string("synthetic"),
                               std::string("--batch-size"),
                               std::string("32"),
                               std::string("--epochs"),
                               std::string("1000"),
                               std::string("--no-eval"),
                               std::string("--progress"),
                               std::string("lines"),
                               std::string("--log-every"),
                               std::string("20"),
                               std::string("--timeout"),
                               std::string("5")}) {
    o.argv.push_back(a);
  }
  o.unset_env = loom::test::job_env_names();
  o.timeout = std::chrono::seconds(120);
  return o;
}

bool has_line_with(const std::string& text, const std::vector<std::string>& parts) {
  size_t at = 0;
  while (at < text.size()) {
    const size_t end = std::min(text.find('\n', at), text.size());
    const std::string line = text.substr(at, end - at);
    bool all = true;
    for (const auto& p : parts) all = all && line.find(p) != std::string::npos;
    if (all) return true;
    at = end + 1;
  }
  return false;
}

TEST(MultiHost, CutLinkEndsBothNodesWithANamedErrorWithinTheTimeout) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to create network namespaces (ip netns); skipped";
  if (sh("command -v ip >/dev/null 2>&1") != 0) GTEST_SKIP() << "needs iproute2 (ip); skipped";
  TwoHosts hosts;
  ASSERT_TRUE(hosts.ok()) << "could not create the namespaces and the veth link";
  const int port = 20000 + static_cast<int>(::getpid() % 20000);

  Process a(node(hosts, 0, hosts.addr_a(), port));
  Process b(node(hosts, 1, hosts.addr_a(), port));
  // Training across the link: node 0 reports steps (each one an allreduce with node 1).
  ASSERT_TRUE(a.wait_for_output("samples/s", 3, std::chrono::seconds(90))) << a.err() << "\n--- node 1:\n" << b.err();
  const auto cut_at = std::chrono::steady_clock::now();
  ASSERT_TRUE(hosts.cut());
  const auto ra = a.wait();
  const auto rb = b.wait();
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - cut_at).count();
  EXPECT_FALSE(ra.timed_out || rb.timed_out) << "hung";
  EXPECT_NE(ra.exit_code, 0) << ra.describe();
  EXPECT_NE(rb.exit_code, 0) << rb.describe();
  // 5 s of --timeout, 3 s of diagnosis, the launchers' grace periods.
  EXPECT_LT(took, 40.0);
  // Node 0 hosts the store: it names rank 1. Node 1 cannot reach anything on node 0.
  EXPECT_TRUE(has_line_with(ra.err, {"rank 0", "timed out", "silent: ", "rank 1 (last heard"})) << ra.err;
  EXPECT_TRUE(has_line_with(rb.err, {"rank 1", "timed out", "silent: ", "rank 0 (the job's store"})) << rb.err;
  std::cout << "link cut; both nodes ended after " << took << " s\n--- node 0:\n"
            << ra.err.substr(ra.err.rfind("loom: rank")) << "--- node 1:\n"
            << rb.err.substr(rb.err.rfind("loom: rank"));
}

}  // namespace
