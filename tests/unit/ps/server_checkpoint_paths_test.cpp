// Where a ps::Server writes: only under its own directories, to names it builds; a
// message naming a path is refused and writes nothing.
#include "loom/ps/server.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>

#include "loom/core/error.h"
#include "unit/ps/ps_testing.h"

namespace loom::ps {
namespace {

using namespace loom::ps::testing;
namespace fs = std::filesystem;

// Files under `dir`, recursively, as paths relative to it.
std::vector<std::string> files_under(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) out.push_back(fs::relative(e.path(), dir).string());
  std::sort(out.begin(), out.end());
  return out;
}

// The server chooses where it writes: a message naming a path (absolute, or climbing
// out with "..") is refused, names the cause, and writes nothing anywhere.
TEST(PsServerCheckpointPaths, AMessageNamingAPathWritesNothingOutsideTheDirectory) {
  const std::string root = temp_dir();
  const std::string dir = root + "/server";  // the server's own directory
  const bool tmp_x_existed = fs::exists("/tmp/x"), tmp_x_server0_existed = fs::exists("/tmp/x.server0");
  fs::create_directories(dir + "/saves");
  fs::create_directories(dir + "/ckpts");
  auto ctx = std::make_shared<ZmqContext>();
  ServerOptions so = server_options(ctx, 1);
  so.save_dir = dir + "/saves";
  so.checkpoint_dir = dir + "/ckpts";
  ServerThread s(so);
  Worker w(model_specs(), worker_options(ctx, {s.endpoint()}, 0));
  w.init(initial_values());
  VanOptions raw_options;
  raw_options.context = ctx;
  raw_options.timeout = 3s;
  ZmqClientVan raw(s.endpoint(), 0, raw_options);  // a peer that skips the Worker's own checks
  int64_t rejected = 0;
  uint64_t seq = 100;
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"/tmp/x", "contains '/'"}, {root + "/abs", "contains '/'"},
      {"../x", "contains '/'"},   {"../../x", "contains '/'"},
      {"..", "starts with '.'"},  {"x/../../y", "contains '/'"},
      {"a..b", "contains '..'"},  {".hidden", "starts with '.'"},
      {"", "is empty"},           {std::string("x\0y", 3), "byte 0x00"},
      {"x\ny", "byte 0x0a"},      {std::string(129, 'a'), "at most 128"},
  };
  for (const auto& [name, cause] : bad) {
    for (const std::string verb : {"save", "checkpoint"}) {
      Header h;
      h.op = Op::command;
      h.seq = ++seq;
      raw.send(h, Payload::from_string(verb + " " + name));
      const Message m = reply_to(raw, seq);
      EXPECT_EQ(m.header.op, Op::error) << verb << " " << name;
      const std::string why(m.payload.bytes());
      EXPECT_NE(why.find(verb + ": invalid checkpoint name"), std::string::npos) << why;
      EXPECT_NE(why.find(cause), std::string::npos) << why;
      EXPECT_EQ(why.find('\n'), std::string::npos) << "one line: " << why;
      expect_rejected(s.server(), ++rejected);
    }
    // The Worker refuses them before sending anything.
    EXPECT_THROW(w.save(name), ConfigError) << name;
    EXPECT_THROW(w.checkpoint(name), ConfigError) << name;
  }
  EXPECT_EQ(files_under(root), std::vector<std::string>({"server", "server/ckpts", "server/saves"}));
  EXPECT_EQ(fs::exists("/tmp/x"), tmp_x_existed);
  EXPECT_EQ(fs::exists("/tmp/x.server0"), tmp_x_server0_existed);

  // Good names land where the server says, under names it builds.
  w.save("model.v1");
  w.checkpoint("step-00000002");
  EXPECT_EQ(files_under(root), std::vector<std::string>({"server", "server/ckpts", "server/ckpts/step-00000002",
                                                         "server/ckpts/step-00000002/ps.server0", "server/saves",
                                                         "server/saves/model.v1.server0"}));
  w.done();
  EXPECT_TRUE(s.finished_within(3s));
  EXPECT_EQ(s.server().rejected(), rejected);
  fs::remove_all(root);
}

TEST(PsServerCheckpointPaths, SavePrefixSplitsIntoTheServersDirectoryAndAName) {
  EXPECT_EQ(split_save_prefix("out/run1").dir, "out");
  EXPECT_EQ(split_save_prefix("out/run1").name, "run1");
  EXPECT_EQ(split_save_prefix("/abs/dir/shard").dir, "/abs/dir");
  EXPECT_EQ(split_save_prefix("shard").dir, ".");
  EXPECT_EQ(split_save_prefix("shard").name, "shard");
  for (const std::string bad : {"out/", "out/..", "out/.x", "a b"}) {
    try {
      split_save_prefix(bad);
      ADD_FAILURE() << bad;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("--ps-save " + bad), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(checkpoint_name_problem("step-00000120"), "");
  EXPECT_EQ(checkpoint_name_problem("ckpt_1.v2+x"), "");
}

}  // namespace
}  // namespace loom::ps
