// --strategy ps through the real CLI and launcher: workers and parameter servers as real
// processes over real ZeroMQ sockets.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "loom/launch/free_port.h"
#include "support/process.h"
#include "support/train_runs.h"

namespace {

namespace fs = std::filesystem;

std::string dir_for(const std::string& name) { return loom::test::fresh_dir("ps", name); }

loom::test::RunResult loom_train(std::vector<std::string> args, int timeout_s = 180) {
  return loom::test::train_equivalence_job(std::move(args), timeout_s);
}

using loom::test::max_abs_diff;
using loom::test::summary_of;

class PsSync : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    reference_ = dir_for("reference") + "/single.pt";
    const auto r = loom_train({"--strategy", "single", "--save", reference_});
    ASSERT_TRUE(r.exited_with(0)) << r.describe();
  }
  static std::string reference_;
};
std::string PsSync::reference_;

// The contract: sync mode, 2 workers and 2 servers, 20 SGD-momentum steps.
TEST_F(PsSync, TwoWorkersTwoServersEqualSingle) {
  const auto dir = dir_for("w2s2");
  // A small slice size splits the first layer across both servers.
  const auto r = loom_train({"--strategy", "ps", "--nproc", "2", "--servers", "2", "--ps-slice-mb", "0.25", "--save",
                             dir + "/m.pt", "--metrics", dir + "/m.jsonl"});
  ASSERT_TRUE(r.exited_with(0)) << r.describe();
  EXPECT_LT(max_abs_diff(reference_, dir + "/m.pt"), 1e-5);
  const auto s = summary_of(dir + "/m.jsonl");
  EXPECT_EQ(s["strategy"], "ps");
  EXPECT_EQ(s["world_size"], 2);  // workers; the servers are not in the data world
  // Both servers announced themselves and were used.
  EXPECT_NE(r.err.find("parameter server 0: serving 2 workers"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("parameter server 1: serving 2 workers"), std::string::npos) << r.err;
}

TEST_F(PsSync, ProportionalSharesAndOneWorkerEqualSingle) {
  const auto dir = dir_for("prop");
  auto r = loom_train({"--strategy", "ps", "--nproc", "3", "--servers", "1", "--partition", "proportional",
                       "--shard-weights", "2,1,1", "--save", dir + "/p.pt"});
  ASSERT_TRUE(r.exited_with(0)) << r.describe();
  EXPECT_LT(max_abs_diff(reference_, dir + "/p.pt"), 1e-5);
  r = loom_train({"--strategy", "ps", "--nproc", "1", "--servers", "1", "--save", dir + "/one.pt"});
  ASSERT_TRUE(r.exited_with(0)) << r.describe();
  EXPECT_LT(max_abs_diff(reference_, dir + "/one.pt"), 1e-5);
}

// This machine's first IPv4 address that is not loopback ("" when it has none).
std::string non_loopback_address() {
  ifaddrs* all = nullptr;
  if (getifaddrs(&all) != 0) return "";
  std::string found;
  for (ifaddrs* a = all; a && found.empty(); a = a->ifa_next) {
    if (!a->ifa_addr || a->ifa_addr->sa_family != AF_INET) continue;
    char text[INET_ADDRSTRLEN] = {};
    inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(a->ifa_addr)->sin_addr, text, sizeof text);
    if (std::string(text).rfind("127.", 0) != 0) found = text;
  }
  freeifaddrs(all);
  return found;
}

// Off loopback, `loom train` gives the job a fresh CURVE key pair through the
// environment: the servers admit only its workers, the messages are encrypted, and the
// result still equals single. Servers started on their own get no key from the job:
// without one (or --insecure) the workers refuse to connect, at once, naming the fix.
TEST_F(PsSync, OffLoopbackTheJobAuthenticatesAndEncryptsWithItsOwnKey) {
  const std::string address = non_loopback_address();
  if (address.empty()) GTEST_SKIP() << "this machine has no address but loopback";
  const auto dir = dir_for("curve");
  const auto r = loom_train({"--strategy", "ps", "--nproc", "2", "--ps-host", address, "--save", dir + "/m.pt"});
  ASSERT_TRUE(r.exited_with(0)) << r.describe();
  EXPECT_NE(r.err.find("authenticate and encrypt with a new CURVE key pair"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("tcp://" + address), std::string::npos) << r.err;  // it did listen there
  EXPECT_LT(max_abs_diff(reference_, dir + "/m.pt"), 1e-5);

  loom::test::RunOptions server;
  server.argv = {LOOM_BINARY,     "ps-server",
                 "--index",       "0",
                 "--workers",     "2",
                 "--servers",     "1",
                 "--master-port", std::to_string(loom::launch::pick_free_port()),
                 "--ps-host",     address,
                 "--timeout",     "20"};
  server.unset_env = loom::test::job_env_names();
  server.unset_env.insert(server.unset_env.end(), {"LOOM_PS_CURVE_SECRET", "LOOM_PS_CURVE_KEY_FILE"});
  server.timeout = std::chrono::seconds(60);
  const auto refused = loom::test::run(server);
  EXPECT_TRUE(refused.exited_with(1)) << refused.describe();
  EXPECT_LT(refused.elapsed, std::chrono::seconds(10)) << refused.describe();  // at once, not at --timeout
  EXPECT_NE(refused.err.find("parameter server: refusing to listen on tcp://" + address +
                             ":0 without encryption or authentication"),
            std::string::npos)
      << refused.err;
  EXPECT_NE(refused.err.find("or pass --insecure"), std::string::npos) << refused.err;
}

// Servers write their shards and optimizer state; new servers started from them serve
// those values: with a negligible --lr (1e-30: no fp32 parameter moves) the continued
// run's model is exactly the checkpointed one.
TEST(Ps, ServersCheckpointTheirShardsAndStartFromThem) {
  const auto dir = dir_for("ckpt");
  auto r = loom_train({"--strategy", "ps", "--nproc", "2", "--servers", "2", "--ps-slice-mb", "0.25", "--save",
                       dir + "/a.pt", "--ps-save", dir + "/shard"});
  ASSERT_TRUE(r.exited_with(0)) << r.describe();
  ASSERT_TRUE(fs::exists(dir + "/shard.server0"));
  ASSERT_TRUE(fs::exists(dir + "/shard.server1"));
  r = loom_train({"--strategy", "ps", "--nproc", "2", "--servers", "2", "--ps-slice-mb", "0.25", "--ps-load",
                  dir + "/shard", "--lr", "1e-30", "--steps", "1", "--seed", "11", "--save", dir + "/b.pt"});
  ASSERT_TRUE(r.exited_with(0)) << r.describe();
  EXPECT_EQ(max_abs_diff(dir + "/a.pt", dir + "/b.pt"), 0.0);
  // Another --ps-slice-mb (here the default, 1) would make other keys: refused at once,
  // naming both sizes (by whichever server reads its file first).
  r = loom_train({"--strategy", "ps", "--nproc", "2", "--servers", "2", "--ps-load", dir + "/shard", "--steps", "1",
                  "--timeout", "20"},
                 60);
  EXPECT_FALSE(r.timed_out) << r.describe();
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find(" was written with --ps-slice-mb 0.25 (262144 bytes), this run has "
                       "--ps-slice-mb 1 (1048576 bytes)"),
            std::string::npos)
      << r.err;
  // A checkpoint that is not one: a named error, no hang.
  { std::ofstream(dir + "/bad.server0") << "not a checkpoint"; }
  r = loom_train({"--strategy", "ps", "--nproc", "1", "--servers", "1", "--ps-load", dir + "/bad", "--timeout", "20"},
                 60);
  EXPECT_FALSE(r.timed_out) << r.describe();
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("checkpoint error"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("bad.server0"), std::string::npos) << r.err;
}

TEST(Ps, TooManyServersForTheJobIsAConfigError) {
  loom::test::RunOptions o;
  o.argv = {LOOM_BINARY, "run", "--nproc", "2",   "--",     LOOM_BINARY, "train",     "--strategy", "ps",
            "--servers", "2",   "--model", "mlp", "--data", "synthetic", "--timeout", "20"};
  o.unset_env = loom::test::job_env_names();
  o.timeout = std::chrono::seconds(60);
  const auto r = loom::test::run(o);
  EXPECT_FALSE(r.timed_out) << r.describe();
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("no room for 2 servers"), std::string::npos) << r.err;
}

// Servers on their own (`loom ps-server`, as on other machines): the workers' job runs
// every rank as a worker (--ps-external-servers) and finds the server through the store.
TEST(Ps, ExternalServerStartedOnItsOwn) {
  const auto dir = dir_for("external");
  const std::string port = std::to_string(loom::launch::pick_free_port());
  loom::test::RunOptions server;
  server.argv = {LOOM_BINARY,     "ps-server", "--index", "0",    "--workers",  "2",   "--servers", "1",
                 "--master-port", port,        "--lr",    "0.05", "--momentum", "0.9", "--timeout", "60"};
  server.unset_env = loom::test::job_env_names();
  server.timeout = std::chrono::seconds(120);
  loom::test::Process server_process(server);
  loom::test::RunOptions workers;
  workers.argv = {LOOM_BINARY,
                  "run",
                  "--nproc",
                  "2",
                  "--master-port",
                  port,
                  "--",
                  LOOM_BINARY,
                  "train",
                  "--strategy",
                  "ps",
                  "--servers",
                  "1",
                  "--ps-external-servers",
                  "--model",
                  "mlp",
                  "--data",
                  "synthetic",
                  "--synthetic-samples",
                  "2048",
                  "--batch-size",
                  "48",
                  "--lr",
                  "0.05",
                  "--momentum",
                  "0.9",
                  "--steps",
                  "20",
                  "--seed",
                  "3",
                  "--no-eval",
                  "--progress",
                  "off",
                  "--timeout",
                  "60",
                  "--save",
                  dir + "/m.pt"};
  workers.unset_env = server.unset_env;
  workers.timeout = std::chrono::seconds(120);
  const auto w = loom::test::run(workers);
  const auto s = server_process.wait();
  ASSERT_TRUE(w.exited_with(0)) << w.describe();
  ASSERT_TRUE(s.exited_with(0)) << s.describe();
  const auto single = loom_train({"--strategy", "single", "--save", dir + "/single.pt"});
  ASSERT_TRUE(single.exited_with(0)) << single.describe();
  EXPECT_LT(max_abs_diff(dir + "/single.pt", dir + "/m.pt"), 1e-5);
}

// Faults (issue 5): in async mode a worker that dies is dropped and the others finish;
// in sync mode the job ends with a named error.
TEST(PsFaults, AsyncJobGoesOnWithoutAKilledWorker) {
  const auto dir = dir_for("kill_async");
  loom::test::RunOptions o;
  o.argv = {LOOM_BINARY,
            "train",
            "--strategy",
            "ps",
            "--nproc",
            "3",
            "--servers",
            "1",
            "--consistency",
            "async",
            "--model",
            "mlp",
            "--data",
            "synthetic",
            "--synthetic-samples",
            "4096",
            "--batch-size",
            "48",
            "--steps",
            "60",
            "--lr",
            "0.05",
            "--progress",
            "off",
            "--timeout",
            "10",
            "--save",
            dir + "/m.pt",
            "--metrics",
            dir + "/m.jsonl"};
  o.env = {{"LOOM_FAULT_INJECT", "kill:1:5"}};
  o.unset_env = loom::test::job_env_names();
  o.timeout = std::chrono::seconds(120);
  const auto r = loom::test::run(o);
  ASSERT_TRUE(r.exited_with(0)) << r.describe();
  EXPECT_NE(r.err.find("rank 1 was killed by signal 9 (SIGKILL); the other ranks go on without it"), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("worker 1 sent nothing for 5 s: dropped"), std::string::npos) << r.err;
  EXPECT_TRUE(fs::exists(dir + "/m.pt"));
  EXPECT_EQ(summary_of(dir + "/m.jsonl")["steps"], 60);
}

TEST(PsFaults, SyncJobEndsWithANamedErrorWhenAWorkerDies) {
  loom::test::RunOptions o;
  o.argv = {LOOM_BINARY, "train",     "--strategy", "ps", "--nproc",    "2",   "--servers", "1", "--model", "mlp",
            "--data",    "synthetic", "--steps",    "40", "--progress", "off", "--timeout", "20"};
  o.env = {{"LOOM_FAULT_INJECT", "kill:1:5"}};
  o.unset_env = loom::test::job_env_names();
  o.timeout = std::chrono::seconds(90);
  const auto r = loom::test::run(o);
  EXPECT_FALSE(r.timed_out) << r.describe();
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("launch error: rank 1 was killed by signal 9 (SIGKILL)"), std::string::npos) << r.err;
}

// The accuracy target for the asynchronous modes: the CNN on Fashion-MNIST,
// 2 workers, 2 epochs, >= 0.88 test accuracy. (--lr 0.03: with lr 0.05, stale momentum
// updates left async at 0.879; 0.03 gave 0.895.) With `kill_server_at` > 0, the server
// is killed (SIGKILL) when a key reaches that version, and the job, checkpointed every
// 100 steps with --max-restarts 1, restarts and resumes.
void expect_accuracy(const std::string& name, std::vector<std::string> mode, double bar = 0.88,
                     int kill_server_at = 0) {
  const auto dir = dir_for(name);
  loom::test::RunOptions o;
  o.argv = {LOOM_BINARY, "train", "--strategy",   "ps",
            "--nproc",   "2",     "--servers",    "1",
            "--model",   "cnn",   "--data",       "fashion-mnist",
            "--epochs",  "2",     "--batch-size", "128",
            "--lr",      "0.03",  "--momentum",   "0.9",
            "--threads", "1",     "--progress",   "off",
            "--timeout", "120",   "--metrics",    dir + "/m.jsonl"};
  o.argv.insert(o.argv.end(), mode.begin(), mode.end());
  if (kill_server_at > 0) {
    o.argv.insert(o.argv.end(),
                  {"--checkpoint-dir", dir + "/ckpt", "--checkpoint-every", "100", "--max-restarts", "1"});
    o.env = {{"LOOM_FAULT_INJECT", "kill:2:" + std::to_string(kill_server_at)}};
  }
  o.unset_env = loom::test::job_env_names();
  o.timeout = std::chrono::seconds(600);
  const auto r = loom::test::run(o);
  ASSERT_TRUE(r.exited_with(0)) << r.describe();
  if (kill_server_at > 0) {
    EXPECT_NE(r.err.find("rank 2 was killed by signal 9 (SIGKILL); restarting all workers"), std::string::npos)
        << r.err;
    EXPECT_NE(r.err.find("parameter server 0: resuming from"), std::string::npos) << r.err;
  }
  const auto s = summary_of(dir + "/m.jsonl");
  EXPECT_GE(s["test_accuracy"].get<double>(), bar) << s.dump();
}

TEST(PsAccuracy, AsyncCnnReaches088InTwoEpochs) { expect_accuracy("async", {"--consistency", "async"}); }

TEST(PsAccuracy, SspCnnReaches088InTwoEpochs) { expect_accuracy("ssp", {"--consistency", "ssp", "--staleness", "2"}); }

// The fault test for asynchronous training: the server dies halfway (a key's
// version counts both workers' pushes: 900 is about step 450 of 936); the restarted job
// stays within 0.5 points of the 0.88 bar.
TEST(PsAccuracy, AsyncCnnWithTheServerKilledHalfwayStaysWithinHalfAPoint) {
  expect_accuracy("async_killed", {"--consistency", "async"}, 0.875, 900);
}

}  // namespace
