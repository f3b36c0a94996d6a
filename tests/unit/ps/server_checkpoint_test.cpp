// ps::Server checkpoints: a saved shard loads into new servers that continue with the same
// values and optimizer state; missing, garbage, truncated and corrupted files are refused
// with one line naming the file and the cause; save errors are refused naming the place.
#include "loom/ps/server.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "loom/core/error.h"
#include "unit/ps/ps_testing.h"

namespace loom::ps {
namespace {

using namespace loom::ps::testing;
namespace fs = std::filesystem;

class PsServerCheckpoint : public ::testing::TestWithParam<std::string> {};

TEST_P(PsServerCheckpoint, LoadedServersContinueWithTheSameValuesAndOptimizerState) {
  const auto o = GetParam() == "adam" ? adam(0.01) : sgd(0.1, 0.9);
  const std::string dir = temp_dir();
  const std::string prefix = dir + "/ckpt";
  const int64_t slice_bytes = 32;  // "w": 3 slices, spread over both servers
  auto ctx = std::make_shared<ZmqContext>();
  std::vector<std::unique_ptr<ServerThread>> a;
  std::vector<std::string> a_endpoints;
  for (int i = 0; i < 2; ++i) {
    ServerOptions so = server_options(ctx, 1, Consistency::sync, o);
    so.server_index = i;
    so.save_dir = dir;
    a.push_back(std::make_unique<ServerThread>(so));
    a_endpoints.push_back(a.back()->endpoint());
  }
  Worker wa(model_specs(), worker_options(ctx, a_endpoints, 0, slice_bytes));
  wa.init(initial_values());
  auto va = zeros_like_model();
  wa.wait(wa.pull(va, 0));
  for (int t = 0; t < 2; ++t) {
    const auto g = gradients(t, 0);
    wa.wait(wa.push(g, 1.0, t));
    wa.wait(wa.pull(va, t + 1));
  }
  wa.save("ckpt");
  ASSERT_TRUE(fs::exists(prefix + ".server0"));
  ASSERT_TRUE(fs::exists(prefix + ".server1"));

  std::vector<std::unique_ptr<ServerThread>> b;
  std::vector<std::string> b_endpoints;
  for (int i = 0; i < 2; ++i) {
    ServerOptions so = server_options(ctx, 1, Consistency::sync, o);
    so.server_index = i;
    so.load_path = prefix + ".server" + std::to_string(i);
    b.push_back(std::make_unique<ServerThread>(so));
    b_endpoints.push_back(b.back()->endpoint());
  }
  Worker wb(model_specs(), worker_options(ctx, b_endpoints, 0, slice_bytes));
  wb.init(zeros_like_model());  // keys from the checkpoint keep their values
  auto vb = zeros_like_model();
  wb.wait(wb.pull(vb, 0));
  EXPECT_TRUE(all_equal(vb, va));

  // The next step is the same on both. A loaded shard starts a new run: its sync clock
  // starts again at 0 (values and optimizer state carry over), so wb pushes step 0.
  const auto g = gradients(2, 0);
  wa.wait(wa.push(g, 1.0, 2));
  wa.wait(wa.pull(va, 3));
  wb.wait(wb.push(g, 1.0, 0));
  wb.wait(wb.pull(vb, 1));
  EXPECT_TRUE(all_equal(vb, va));
  std::vector<std::vector<at::Tensor>> grads;
  for (int t = 0; t < 3; ++t) grads.push_back(gradients(t, 0));
  EXPECT_TRUE(all_close(va, reference_run(o, grads), 1e-6));
  // Without the optimizer state the third step differs (momentum / Adam's moments).
  auto fresh = reference_run(o, {grads[0], grads[1]});
  {
    std::vector<at::Tensor> params;
    for (const auto& t : fresh) params.push_back(t.clone().requires_grad_(true));
    auto opt = optim::make_optimizer(params, o);
    for (size_t p = 0; p < params.size(); ++p) params[p].mutable_grad() = grads[2][p].clone();
    opt->step();
    for (size_t p = 0; p < params.size(); ++p) fresh[p] = params[p].detach();
  }
  EXPECT_FALSE(all_close(vb, fresh, 1e-5));

  wa.done();
  wb.done();
  for (auto* group : {&a, &b}) {
    for (auto& s : *group) {
      EXPECT_TRUE(s->finished_within(3s));
      EXPECT_NO_THROW(s->get());
    }
  }

  // A truncated copy of a real checkpoint is refused, naming the file.
  const std::string truncated = dir + "/truncated.server0";
  {
    std::ifstream in(prefix + ".server0", std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::ofstream(truncated, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  }
  ServerOptions so = server_options(ctx, 1, Consistency::sync, o);
  so.load_path = truncated;
  try {
    Server server(so);
    ADD_FAILURE() << "a truncated checkpoint was loaded";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find(truncated), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Optimizers, PsServerCheckpoint, ::testing::Values("sgd", "adam"));

TEST(PsServerCheckpointErrors, GarbageOrMissingFileIsACheckpointErrorNamingThePath) {
  const std::string dir = temp_dir();
  auto ctx = std::make_shared<ZmqContext>();
  const std::string garbage = dir + "/garbage.server0";
  std::ofstream(garbage, std::ios::binary) << "this is not a checkpoint\n\x01\x02\x03";
  const std::string empty = dir + "/empty.server0";
  std::ofstream(empty, std::ios::binary).flush();
  const std::string missing = dir + "/missing.server0";
  for (const std::string& path : {garbage, empty, missing}) {
    ServerOptions so = server_options(ctx, 1);
    so.load_path = path;
    try {
      Server server(so);
      ADD_FAILURE() << "loaded " << path;
    } catch (const CheckpointError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(path), std::string::npos) << what;
      EXPECT_NE(what.find("parameter server 0"), std::string::npos) << what;
      EXPECT_EQ(what.find('\n'), std::string::npos) << "one line: " << what;
    } catch (const std::exception& e) {
      ADD_FAILURE() << path << ": not a CheckpointError: " << e.what();
    }
  }
  fs::remove_all(dir);
}

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const std::string& bytes) { std::ofstream(path, std::ios::binary) << bytes; }

// A server holding initial_values() saves them as <dir>/good.server0; returns that path.
std::string save_initial_values(const std::string& dir) {
  auto ctx = std::make_shared<ZmqContext>();
  ServerOptions so = server_options(ctx, 1);
  so.save_dir = dir;
  ServerThread s(so);
  Worker w(model_specs(), worker_options(ctx, {s.endpoint()}, 0));
  w.init(initial_values());
  w.save("good");
  w.done();
  EXPECT_TRUE(s.finished_within(3s));
  return dir + "/good.server0";
}

// The values a server loaded from `path` (one worker pulls them).
std::vector<at::Tensor> loaded_values(const std::string& path) {
  auto ctx = std::make_shared<ZmqContext>();
  ServerOptions so = server_options(ctx, 1);
  so.load_path = path;
  ServerThread s(so);
  Worker w(model_specs(), worker_options(ctx, {s.endpoint()}, 0));
  auto values = zeros_like_model();
  w.wait(w.pull(values, 0));
  w.done();
  EXPECT_TRUE(s.finished_within(3s));
  return values;
}

// One changed byte inside a value tensor, or the last byte cut off, is refused naming the
// file and the cause. (A bare archive, as loom wrote before the checked format, loads
// the changed byte silently: libtorch's zip reader does not check CRCs.)
TEST(PsServerCheckpointErrors, AChangedByteOrATruncatedFileIsRefusedNamingTheCause) {
  const std::string dir = temp_dir();
  const std::string good = save_initial_values(dir);
  const std::string bytes = file_bytes(good);
  EXPECT_TRUE(all_equal(loaded_values(good), initial_values()));

  const at::Tensor w = initial_values()[0].contiguous();
  const size_t at = bytes.find(std::string(static_cast<const char*>(w.data_ptr()), w.nbytes()));
  ASSERT_NE(at, std::string::npos) << "the values of \"w\" are not in the file as they are";
  std::string changed = bytes;
  changed[at + 5] = static_cast<char>(changed[at + 5] ^ 0x10);
  const std::string corrupt = dir + "/corrupt.server0", truncated = dir + "/truncated.server0";
  write_bytes(corrupt, changed);
  write_bytes(truncated, bytes.substr(0, bytes.size() - 1));

  auto ctx = std::make_shared<ZmqContext>();
  for (const auto& [path, cause] : std::vector<std::pair<std::string, std::string>>{
           {corrupt, "checksum mismatch, the checkpoint is corrupt"}, {truncated, "truncated or padded checkpoint"}}) {
    ServerOptions so = server_options(ctx, 1);
    so.load_path = path;
    try {
      Server server(so);
      ADD_FAILURE() << "loaded " << path;
    } catch (const CheckpointError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("parameter server 0: " + path + ": " + cause), std::string::npos) << what;
      EXPECT_EQ(what.find('\n'), std::string::npos) << "one line: " << what;
    }
  }
  fs::remove_all(dir);
}

// A checkpoint from before the checked format (the bare archive: the framed file without
// its 16-byte header and 8-byte trailer) still loads.
TEST(PsServerCheckpointErrors, ACheckpointWithoutTheFrameFromAnOlderLoomStillLoads) {
  const std::string dir = temp_dir();
  const std::string bytes = file_bytes(save_initial_values(dir));
  ASSERT_EQ(bytes.substr(0, 8), "LOOMPSV1");
  ASSERT_GT(bytes.size(), 24u);
  const std::string old = dir + "/old.server0";
  write_bytes(old, bytes.substr(16, bytes.size() - 24));
  EXPECT_TRUE(all_equal(loaded_values(old), initial_values()));
  fs::remove_all(dir);
}

TEST(PsServerCheckpointErrors, SaveToAnUnwritableDirectoryIsRefusedNamingIt) {
  auto ctx = std::make_shared<ZmqContext>();
  ServerOptions so = server_options(ctx, 1);
  so.save_dir = "/nonexistent-loom-dir/sub";
  ServerThread s(so);
  Worker w(model_specs(), worker_options(ctx, {s.endpoint()}, 0));
  w.init(initial_values());
  expect_comm_error([&] { w.save("ckpt"); }, {"refused a command", "/nonexistent-loom-dir/sub/ckpt.server0"});
  EXPECT_EQ(s.server().rejected(), 1);
  w.done();
  EXPECT_TRUE(s.finished_within(3s));
}

TEST(PsServerCheckpointErrors, ServerWithoutADirectoryRefusesToSave) {
  auto ctx = std::make_shared<ZmqContext>();
  ServerThread s(server_options(ctx, 1));
  Worker w(model_specs(), worker_options(ctx, {s.endpoint()}, 0));
  w.init(initial_values());
  expect_comm_error([&] { w.save("ckpt"); }, {"parameter server 0 has no save directory", "--ps-save"});
  expect_comm_error([&] { w.checkpoint("step-00000001"); },
                    {"parameter server 0 has no checkpoint directory", "--checkpoint-dir"});
  EXPECT_EQ(s.server().rejected(), 2);
  w.done();
  EXPECT_TRUE(s.finished_within(3s));
}

// A server checkpoint's keys are the slices of its job's --ps-slice-mb: a server told
// another size refuses the file at once, one line naming both sizes; one not told a
// size (0) reads it, as does one told the same size.
TEST(PsServerCheckpointErrors, AnotherSliceSizeIsRefusedNamingBoth) {
  const std::string dir = temp_dir();
  auto ctx = std::make_shared<ZmqContext>();
  {
    ServerOptions so = server_options(ctx, 1);
    so.save_dir = dir;
    so.slice_bytes = 32;
    ServerThread s(so);
    Worker w(model_specs(), worker_options(ctx, {s.endpoint()}, 0, 32));  // "w" in 3 slices
    w.init(initial_values());
    w.save("s32");
    w.done();
    EXPECT_TRUE(s.finished_within(3s));
  }
  const std::string path = dir + "/s32.server0";
  ServerOptions other = server_options(ctx, 1);
  other.load_path = path;
  other.slice_bytes = int64_t{1} << 20;
  try {
    Server server(other);
    ADD_FAILURE() << "a checkpoint of 32-byte slices was loaded by a server of 1 MiB slices";
  } catch (const CheckpointError& e) {
    const std::string what = e.what();
    for (const char* part : {"parameter server 0", "s32.server0", "--ps-slice-mb 3.05176e-05 (32 bytes)",
                             "--ps-slice-mb 1 (1048576 bytes)"}) {
      EXPECT_NE(what.find(part), std::string::npos) << part << " not in: " << what;
    }
    EXPECT_EQ(what.find('\n'), std::string::npos) << "one line: " << what;
  }
  for (const int64_t slice_bytes : {int64_t{32}, int64_t{0}}) {
    ServerOptions same = server_options(ctx, 1);
    same.load_path = path;
    same.slice_bytes = slice_bytes;
    EXPECT_NO_THROW(Server server(same)) << "slice_bytes " << slice_bytes;
  }
  fs::remove_all(dir);
}

// A checkpoint that does not record its slice size (as loom wrote before it did, when
// the default was 4 MiB) read with other slices: the workers' init pushes are refused,
// naming the key, the file and the likely cause, instead of keys of other shapes being
// refused without a cause, or keys it lacks starting afresh beside it.
TEST(PsServerCheckpointErrors, InitPushesOfOtherSlicesThanTheLoadedCheckpointAreRefused) {
  const std::string dir = temp_dir();
  auto ctx = std::make_shared<ZmqContext>();
  {
    ServerOptions so = server_options(ctx, 1);
    so.save_dir = dir;  // slice_bytes 0: not recorded
    ServerThread s(so);
    Worker w({model_specs()[0]}, worker_options(ctx, {s.endpoint()}, 0));  // "w" alone, whole: key 0
    w.init({initial_values()[0]});
    w.save("old");
    w.done();
    EXPECT_TRUE(s.finished_within(3s));
  }
  const std::string path = dir + "/old.server0";
  {
    ServerOptions so = server_options(ctx, 1);
    so.load_path = path;
    ServerThread s(so);
    Worker w(model_specs(), worker_options(ctx, {s.endpoint()}, 0, 32));  // key 0 is now "w"[0:8]
    expect_comm_error([&] { w.init(initial_values()); },
                      {"key 0 has shape [4, 6] in " + path + ", got [8]", "--ps-slice-mb"});
    w.done();
    EXPECT_TRUE(s.finished_within(3s));
  }
  {
    ServerOptions so = server_options(ctx, 1);
    so.load_path = path;
    ServerThread s(so);
    Worker w(model_specs(), worker_options(ctx, {s.endpoint()}, 0));  // key 0 "w" as saved, key 1 "b" new
    expect_comm_error([&] { w.init(initial_values()); }, {"key 1 is not in " + path + " (1 keys)", "--ps-slice-mb"});
    w.done();
    EXPECT_TRUE(s.finished_within(3s));
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace loom::ps
