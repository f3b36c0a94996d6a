// Bad input, table-driven, through the real CLI: every row must end with a one-line error
// naming the problem, a non-zero exit (not a signal: no crash, no core dump), within a
// time limit (no hang), and without leaving an output file or a temporary file behind.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <set>

#include "support/process.h"
#include "support/train_runs.h"

namespace {

namespace fs = std::filesystem;
using loom::test::RunResult;

const std::string kFashion = "/usr/share/datasets/fashion-mnist";

struct BadInput {
  BadInput(std::string name, std::vector<std::string> argv, std::string expected,
           std::function<void(const std::string& dir)> setup = {},
           std::vector<std::pair<std::string, std::string>> env = {})
      : name(std::move(name)),
        argv(std::move(argv)),
        expected(std::move(expected)),
        setup(std::move(setup)),
        env(std::move(env)) {}
  std::string name;
  std::vector<std::string> argv;                      // after `loom`; "@" is replaced by the case's directory
  std::string expected;                               // must appear, whole, in one line of stderr
  std::function<void(const std::string& dir)> setup;  // files the case needs
  std::vector<std::pair<std::string, std::string>> env;
};

// The equivalence job's quick settings, saving to @/out.pt.
std::vector<std::string> train(std::vector<std::string> extra) {
  std::vector<std::string> a{"train",      "--model",      "mlp",       "--data",  "synthetic", "--synthetic-samples",
                             "512",        "--batch-size", "32",        "--steps", "6",         "--no-eval",
                             "--progress", "off",          "--timeout", "10",      "--save",    "@/out.pt"};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

RunResult run_loom(std::vector<std::string> args, const std::string& dir,
                   std::vector<std::pair<std::string, std::string>> env = {}, int timeout_s = 60) {
  loom::test::RunOptions o;
  o.argv = {LOOM_BINARY};
  for (auto& a : args) {
    for (size_t at = a.find('@'); at != std::string::npos; at = a.find('@', at + dir.size())) a.replace(at, 1, dir);
    o.argv.push_back(a);
  }
  o.env = std::move(env);
  o.unset_env = loom::test::job_env_names();
  o.timeout = std::chrono::seconds(timeout_s);
  o.cwd = dir;
  return loom::test::run(o);
}

void write(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

// A NumPy .npy file (format 1.0) as numpy.save writes it: the magic, the version, the
// header dict padded with spaces to a multiple of 64 bytes, then `data` (C order).
void write_npy(const std::string& path, const std::string& descr, const std::string& shape, const std::string& data) {
  std::string header = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  header.append((64 - (10 + header.size() + 1) % 64) % 64, ' ');
  header += '\n';
  std::string file = "\x93NUMPY";
  file += '\x01';
  file += '\x00';
  file += static_cast<char>(header.size() & 0xff);
  file += static_cast<char>(header.size() >> 8);
  write(path, file + header + data);
}

// `rows` x 784 float32 values (little-endian, as on x86), row `nan_row` all NaN.
std::string float_rows(int rows, int nan_row = -1) {
  std::vector<float> v(static_cast<size_t>(rows) * 784);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i % 7) * 0.1f;
  if (nan_row >= 0) std::fill_n(v.begin() + nan_row * 784, 784, std::numeric_limits<float>::quiet_NaN());
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

// `rows` int64 class indices 0..9.
std::string class_rows(int rows) {
  std::vector<int64_t> v(static_cast<size_t>(rows));
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<int64_t>(i % 10);
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(int64_t));
}

// @/x.npy (40 x 784 float32) and @/y.npy (40 int64), then `change` spoils one of them.
std::function<void(const std::string&)> npy_pair(std::function<void(const std::string& dir)> change = {}) {
  return [change](const std::string& d) {
    write_npy(d + "/x.npy", "<f4", "(40, 784)", float_rows(40));
    write_npy(d + "/y.npy", "<i8", "(40,)", class_rows(40));
    if (change) change(d);
  };
}

const std::vector<std::string> kNpyData{"--data", "npy:@/x.npy,@/y.npy"};

void copy_fashion(const std::string& to) {
  fs::create_directories(to);
  for (const auto& e : fs::directory_iterator(kFashion))
    fs::copy_file(e.path(), to + "/" + e.path().filename().string());
}

// A complete 6-step checkpoint of `args` in @/ckpt (made by a real run).
std::function<void(const std::string&)> checkpoint_of(std::vector<std::string> args) {
  return [args](const std::string& dir) {
    auto a = train(args);
    a.insert(a.end(), {"--checkpoint-dir", "@/ckpt", "--checkpoint-every", "3", "--save", "@/first.pt"});
    const auto r = run_loom(a, dir);
    ASSERT_TRUE(r.exited_with(0)) << r.describe();
  };
}

int busy_port(int& fd) {
  fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  ::listen(fd, 1);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  return ntohs(addr.sin_port);
}

int closed_port() {
  int fd = -1;
  const int port = busy_port(fd);
  ::close(fd);
  return port;
}

std::vector<BadInput> cases() {
  static int held = -1;  // a listening socket kept open for the "port in use" row
  static const int in_use = busy_port(held);
  const std::string closed = std::to_string(closed_port());
  std::vector<BadInput> t;
  // ---- data --------------------------------------------------------------------
  t.push_back({"missing_data_dir",
               {"train", "--data", "fashion-mnist", "--data-dir", "@/nowhere", "--steps", "2", "--save", "@/out.pt"},
               "/nowhere"});
  t.push_back({"truncated_idx",
               {"train", "--data", "fashion-mnist", "--data-dir", "@/fm", "--steps", "2", "--save", "@/out.pt"},
               "train-images-idx3-ubyte.gz",
               [](const std::string& d) {
                 copy_fashion(d + "/fm");
                 fs::resize_file(d + "/fm/train-images-idx3-ubyte.gz", 100000);
               }});
  t.push_back({"wrong_magic_idx",
               {"train", "--data", "fashion-mnist", "--data-dir", "@/fm", "--steps", "2", "--save", "@/out.pt"},
               "magic",
               [](const std::string& d) {
                 copy_fashion(d + "/fm");
                 // A valid gzip stream of a labels file where images belong.
                 fs::copy_file(kFashion + "/train-labels-idx1-ubyte.gz", d + "/fm/train-images-idx3-ubyte.gz",
                               fs::copy_options::overwrite_existing);
               }});
  // ---- the user's own files (issue 16): npy, csv, tensors, a model file -------------
  t.push_back({"npy_truncated", train(kNpyData), "x.npy: truncated: header says",
               npy_pair([](const std::string& d) { fs::resize_file(d + "/x.npy", fs::file_size(d + "/x.npy") / 2); })});
  t.push_back({"npy_rows_differ", train(kNpyData), "inputs have 40 rows but targets 39",
               npy_pair([](const std::string& d) { write_npy(d + "/y.npy", "<i8", "(39,)", class_rows(39)); })});
  t.push_back({"npy_complex_dtype", train(kNpyData), "x.npy: unsupported dtype '<c8'",
               npy_pair([](const std::string& d) { write_npy(d + "/x.npy", "<c8", "(40, 784)", float_rows(80)); })});
  t.push_back(
      {"npy_string_targets", train(kNpyData), "y.npy: unsupported dtype '<U3'",
       npy_pair([](const std::string& d) { write_npy(d + "/y.npy", "<U3", "(40,)", std::string(40 * 3 * 4, '\0')); })});
  t.push_back({"npy_empty_file", train(kNpyData), "x.npy: empty file (0 bytes",
               npy_pair([](const std::string& d) { write(d + "/x.npy", ""); })});
  t.push_back({"npy_zero_rows", train(kNpyData), "the inputs hold 0 rows", npy_pair([](const std::string& d) {
                 write_npy(d + "/x.npy", "<f4", "(0, 784)", "");
                 write_npy(d + "/y.npy", "<i8", "(0,)", "");
               })});
  t.push_back({"npy_nan_in_inputs", train(kNpyData), "row 7 holds a NaN in its inputs (pass --allow-nan",
               npy_pair([](const std::string& d) { write_npy(d + "/x.npy", "<f4", "(40, 784)", float_rows(40, 7)); })});
  t.push_back({"csv_wrong_column_count", train({"--data", "csv:@/d.csv"}), "d.csv:4: 2 values, but the header has 3",
               [](const std::string& d) { write(d + "/d.csv", "a,b,y\n1,2,0\n3,4,1\n5,6\n7,8,1\n"); }});
  t.push_back({"csv_not_a_number", train({"--data", "csv:@/d.csv"}), "d.csv:3: column 'b' holds 'abc', not a number",
               [](const std::string& d) { write(d + "/d.csv", "a,b,y\n1,2,0\n3,abc,1\n5,6,0\n"); }});
  t.push_back({"tensors_not_torch_save", train({"--data", "tensors:@/t.pt"}), "t.pt: not a file torch.save writes",
               [](const std::string& d) { write(d + "/t.pt", "inputs,targets\n"); }});
  t.push_back({"model_not_torchscript", train({"--model", "@/notes.pt"}), "notes.pt: not a TorchScript module",
               [](const std::string& d) { write(d + "/notes.pt", "this is not a model\n"); }});
  // ---- checkpoints ---------------------------------------------------------------
  t.push_back({"corrupt_checkpoint", train({"--checkpoint-dir", "@/ckpt", "--resume"}),
               "checksum mismatch, the checkpoint is corrupt", [](const std::string& d) {
                 checkpoint_of({})(d);
                 const std::string part = d + "/ckpt/step-00000006/rank-00000.ckpt";
                 std::fstream f(part, std::ios::in | std::ios::out | std::ios::binary);
                 f.seekg(static_cast<std::streamoff>(fs::file_size(part) / 2));
                 char c = 0;
                 f.read(&c, 1);
                 c = static_cast<char>(c ^ 0x01);
                 f.seekp(static_cast<std::streamoff>(fs::file_size(part) / 2));
                 f.write(&c, 1);
               }});
  t.push_back({"checkpoint_of_another_model", train({"--model", "deep-mlp", "--checkpoint-dir", "@/ckpt", "--resume"}),
               "it was written with --model mlp, this run has deep-mlp", checkpoint_of({})});
  t.push_back({"world_size_mismatch_on_resume",
               train({"--strategy", "pipeline", "--nproc", "3", "--checkpoint-dir", "@/ckpt", "--resume"}),
               "it was written by 2 processes and this run has 3",
               checkpoint_of({"--strategy", "pipeline", "--nproc", "2"})});
  t.push_back({"resume_without_checkpoint", train({"--checkpoint-dir", "@/empty", "--resume"}),
               "--resume: no complete checkpoint in"});
  t.push_back({"resume_without_dir", train({"--resume"}), "--resume needs --checkpoint-dir"});
  t.push_back({"init_missing_file", train({"--init", "@/absent.pt"}), "absent.pt"});
  // ---- configuration -------------------------------------------------------------
  t.push_back({"unknown_config_key", train({"--config", "@/c.toml"}), "bogus",
               [](const std::string& d) { write(d + "/c.toml", "bogus = 1\n"); }});
  t.push_back({"badly_typed_config_key", train({"--config", "@/c.toml"}), "momentum",
               [](const std::string& d) { write(d + "/c.toml", "momentum = \"high\"\n"); }});
  t.push_back({"unknown_flag", train({"--bogus-flag", "3"}), "--bogus-flag"});
  t.push_back({"negative_batch", train({"--batch-size", "-4"}), "--batch-size must be at least 1, got -4"});
  t.push_back({"zero_batch", train({"--batch-size", "0"}), "--batch-size must be at least 1, got 0"});
  t.push_back({"zero_lr", train({"--lr", "0"}), "--lr must be positive, got 0"});
  t.push_back({"zero_threads", train({"--threads", "0"}), "--threads must be at least 1, got 0"});
  t.push_back({"zero_stage_unknown", train({"--strategy", "allreduce", "--nproc", "2", "--zero", "3"}),
               "--zero must be 0, 1 or 2, got 3"});
  t.push_back({"zero_with_pipeline", train({"--strategy", "pipeline", "--nproc", "2", "--zero", "1"}),
               "--zero does not apply to --strategy pipeline"});
  t.push_back({"zero_shard_weights_count",
               train({"--strategy", "allreduce", "--nproc", "2", "--zero", "1", "--zero-shard-weights", "1,1,1"}),
               "--zero-shard-weights 1,1,1 lists 3 weights for --nproc 2"});
  t.push_back({"negative_steps", train({"--steps", "-2"}), "--steps must not be negative, got -2"});
  t.push_back({"zero_checkpoint_every", train({"--checkpoint-dir", "@/c", "--checkpoint-every", "0"}),
               "--checkpoint-every must be at least 1, got 0"});
  t.push_back({"batch_smaller_than_workers", train({"--strategy", "allreduce", "--nproc", "4", "--batch-size", "2"}),
               "--batch-size 2"});
  t.push_back(
      {"shard_weights_count",
       train({"--strategy", "allreduce", "--nproc", "2", "--partition", "proportional", "--shard-weights", "1,2,3"}),
       "--shard-weights has 3 weights for 2 data-parallel workers"});
  t.push_back(
      {"split_does_not_match_model", train({"--strategy", "pipeline", "--nproc", "2", "--split", "1,1"}), "--split"});
  t.push_back({"zero_micro_batches", train({"--strategy", "pipeline", "--nproc", "2", "--micro-batches", "0"}),
               "--micro-batches must be at least 1, got 0"});
  t.push_back({"mesh_does_not_match_nproc", train({"--strategy", "hybrid", "--dp", "2", "--pp", "2", "--nproc", "3"}),
               "--nproc 3"});
  t.push_back({"unknown_strategy", train({"--strategy", "magic"}), "--strategy: unknown value 'magic'"});
  t.push_back({"unknown_model", train({"--model", "resnet999"}), "resnet999"});
  t.push_back(
      {"unknown_schedule", train({"--strategy", "pipeline", "--nproc", "2", "--schedule", "zigzag"}), "zigzag"});
  t.push_back({"unknown_optimizer", train({"--optimizer", "rmsprop"}), "--optimizer: unknown value 'rmsprop'"});
  t.push_back({"malformed_fault_plan", train({}), "LOOM_FAULT_INJECT must be", {}, {{"LOOM_FAULT_INJECT", "boom"}}});
  // ---- the job's processes and network --------------------------------------------
  t.push_back({"port_already_in_use",
               {"run",
                "--nproc",
                "2",
                "--master-port",
                std::to_string(in_use),
                "--",
                LOOM_BINARY,
                "train",
                "--model",
                "mlp",
                "--data",
                "synthetic",
                "--steps",
                "2",
                "--no-eval",
                "--strategy",
                "allreduce",
                "--nproc",
                "2",
                "--timeout",
                "10",
                "--save",
                "@/out.pt"},
               std::to_string(in_use)});
  t.push_back({"unreachable_master",
               train({"--strategy", "allreduce", "--timeout", "3"}),
               "127.0.0.1:" + closed,
               {},
               {{"RANK", "1"},
                {"WORLD_SIZE", "2"},
                {"LOCAL_RANK", "1"},
                {"LOCAL_WORLD_SIZE", "2"},
                {"MASTER_ADDR", "127.0.0.1"},
                {"MASTER_PORT", closed}}});
  t.push_back(
      {"models_differ_across_ranks",
       {"run", "--nproc", "2", "--", "bash", "-c",
        std::string(LOOM_BINARY) + " train --model deep-mlp --depth 2 --data synthetic --steps 2 --no-eval --strategy "
                                   "allreduce --timeout 10 --save @/out.pt --width $((64 + LOCAL_RANK * 8))"},
       "model mismatch across ranks: parameter '1.weight' has shape 64x784 on rank 0 but 72x784 on rank 1"});
  t.push_back({"nan_loss", train({"--lr", "1e30", "--steps", "50"}), "the training loss became"});
  t.push_back({"skip_nonfinite_with_ps", train({"--strategy", "ps", "--skip-nonfinite", "1"}),
               "--skip-nonfinite does not apply to --strategy ps"});
  return t;
}

void PrintTo(const BadInput& c, std::ostream* os) { *os << c.name; }

class BadInputs : public ::testing::TestWithParam<BadInput> {};

TEST_P(BadInputs, FailWithOneNamedLineAndNothingHalfWritten) {
  const BadInput& c = GetParam();
  const auto dir = loom::test::fresh_dir("bad_input", c.name);
  if (c.setup) c.setup(dir);
  if (HasFatalFailure()) return;
  const auto before = [&] {
    std::set<std::string> names;
    for (const auto& e : fs::recursive_directory_iterator(dir)) names.insert(e.path().string());
    return names;
  }();
  const RunResult r = run_loom(c.argv, dir, c.env);
  ASSERT_FALSE(r.timed_out) << "hung: " << r.describe();
  EXPECT_EQ(r.signal, 0) << "crashed: " << r.describe();
  EXPECT_NE(r.exit_code, 0) << r.describe();
  EXPECT_GT(r.exit_code, 0) << r.describe();
  // The cause, whole, on one line; no abort or crash text anywhere.
  bool named = false;
  for (const auto& line : r.err_lines()) named = named || line.find(c.expected) != std::string::npos;
  EXPECT_TRUE(named) << "expected '" << c.expected << "' in one line of:\n" << r.err;
  for (const char* crash : {"terminate called", "Aborted", "Segmentation fault", "core dumped", "Traceback"}) {
    EXPECT_EQ(r.err.find(crash), std::string::npos) << r.err;
  }
  // Nothing new but logs: no model file, no temporary file, no partial checkpoint.
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    const std::string p = e.path().string();
    if (before.count(p) || e.is_directory()) continue;
    ADD_FAILURE() << "left behind: " << p;
  }
}

INSTANTIATE_TEST_SUITE_P(Table, BadInputs, ::testing::ValuesIn(cases()),
                         [](const auto& info) { return info.param.name; });

TEST(BadInputTable, HasAtLeastTwentyFiveRows) { EXPECT_GE(cases().size(), 25u); }

}  // namespace
