// `loom train` as a user runs it: the real binary, real files, exit codes and messages.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "support/process.h"
#include "support/temp_path.h"

namespace {

namespace fs = std::filesystem;
// Runs the loom binary with `args` and a time bound.
loom::test::RunResult loom_cmd(std::vector<std::string> args, int timeout_s = 60) {
  loom::test::RunOptions o;
  o.argv = {LOOM_BINARY};
  o.argv.insert(o.argv.end(), args.begin(), args.end());
  o.unset_env = {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"};
  o.timeout = std::chrono::seconds(timeout_s);
  return loom::test::run(o);
}

std::string temp_dir(const std::string& name) {
  const auto dir = fs::path(loom::test::temp_path("cli_train_" + name));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

nlohmann::json last_record(const std::string& path) {
  std::ifstream in(path);
  std::string line, last;
  while (std::getline(in, line)) last = line;
  return nlohmann::json::parse(last);
}

// The one-line error contract: non-zero exit, exactly one "loom:" line naming the cause.
void expect_one_line_error(const loom::test::RunResult& r, const std::string& needle) {
  EXPECT_NE(r.exit_code, 0) << r.err;
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.signal, 0) << "crashed: " << r.err;
  int lines = 0;
  std::string error_line;
  std::istringstream in(r.err);
  for (std::string l; std::getline(in, l);) {
    if (l.rfind("loom: ", 0) == 0) {
      ++lines;
      error_line = l;
    }
  }
  EXPECT_EQ(lines, 1) << r.err;
  EXPECT_NE(error_line.find(needle), std::string::npos) << "error line: " << error_line;
}

TEST(CliTrain, SyntheticRunWritesMetricsAndModel) {
  const auto dir = temp_dir("ok");
  const auto r = loom_cmd({"train",
                           "--model",
                           "mlp",
                           "--data",
                           "synthetic",
                           "--synthetic-samples",
                           "1024",
                           "--epochs",
                           "2",
                           "--batch-size",
                           "32",
                           "--lr",
                           "0.05",
                           "--momentum",
                           "0.9",
                           "--metrics",
                           dir + "/m.jsonl",
                           "--save",
                           dir + "/model.pt",
                           "--trace",
                           dir + "/trace.json"},
                          120);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto summary = last_record(dir + "/m.jsonl");
  EXPECT_EQ(summary["event"], "summary");
  EXPECT_EQ(summary["steps"], 64);
  EXPECT_GT(summary["test_accuracy"].get<double>(), 0.8);
  EXPECT_TRUE(fs::exists(dir + "/model.pt"));
  const auto trace = nlohmann::json::parse(std::ifstream(dir + "/trace.json"));
  EXPECT_GT(trace["traceEvents"].size(), 64u * 3);
}

TEST(CliTrain, ConfigFileAndFlagOverride) {
  const auto dir = temp_dir("config");
  std::ofstream(dir + "/job.toml") << "model = \"mlp\"\ndata = \"synthetic\"\nsynthetic-samples = 512\n"
                                      "steps = 3\nbatch-size = 16\neval = false\n";
  const auto r = loom_cmd({"train", "--config", dir + "/job.toml", "--steps", "5", "--metrics", dir + "/m.jsonl"}, 60);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(last_record(dir + "/m.jsonl")["steps"], 5);
}

TEST(CliTrain, BadInputsGiveOneLineErrors) {
  const auto dir = temp_dir("bad");
  std::ofstream(dir + "/unknown.toml") << "learning_rate = 0.1\n";
  std::ofstream(dir + "/badtype.toml") << "epochs = \"three\"\n";
  struct Case {
    std::vector<std::string> args;
    std::string needle;
  };
  const std::vector<Case> cases = {
      {{"train", "--config", dir + "/unknown.toml"}, "unknown key 'learning_rate'"},
      {{"train", "--config", dir + "/badtype.toml"}, "key 'epochs' must be an integer"},
      {{"train", "--batch-size", "0"}, "--batch-size must be at least 1"},
      {{"train", "--strategy", "magic"}, "--strategy: unknown value 'magic'"},
      {{"train", "--model", "resnet", "--data", "synthetic"}, "unknown model 'resnet'"},
      {{"train", "--data", "imagenet"}, "imagenet"},
      {{"train", "--data-dir", dir + "/nowhere"}, "dataset-fashion-mnist"},
      {{"train", "--lr", "abc"}, "--lr"},
      {{"train", "--no-such-flag"}, "no-such-flag"},
      {{"train", "--data", "synthetic", "--batch-size", "100000"}, "larger than the training set"},
  };
  for (const auto& c : cases) {
    const auto r = loom_cmd(c.args);
    SCOPED_TRACE(c.needle);
    expect_one_line_error(r, c.needle);
  }
}

TEST(CliTrain, SaveFailsCleanlyWhenTheDirectoryIsMissing) {
  const auto r = loom_cmd({"train", "--model", "mlp", "--data", "synthetic", "--synthetic-samples", "256", "--steps",
                           "2", "--batch-size", "16", "--save", "/nonexistent-dir/m.pt"},
                          60);
  expect_one_line_error(r, "/nonexistent-dir/m.pt");
}

}  // namespace
