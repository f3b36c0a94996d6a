#include "loom/core/options.h"

#include <gtest/gtest.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>

#include "loom/core/error.h"
#include "support/temp_path.h"

namespace {

struct Settings {
  int64_t batch = 64;
  double lr = 0.1;
  std::string model = "cnn";
  bool eval = true;
  std::string weights;
};

class OptionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    table.add("batch-size", &s.batch, "batch");
    table.add("lr", &s.lr, "lr");
    table.add("model", &s.model, "model");
    table.add("eval", &s.eval, "eval");
    table.add("shard-weights", &s.weights, "weights");
    table.add_to(app);
  }
  std::string write_toml(const std::string& text) {
    path = loom::test::temp_path("options_test.toml");
    std::ofstream(path) << text;
    return path;
  }
  void parse(std::vector<std::string> args) {
    args.insert(args.begin(), "prog");
    std::vector<const char*> argv;
    for (auto& a : args) argv.push_back(a.c_str());
    app.parse(static_cast<int>(argv.size()), argv.data());
  }
  Settings s;
  loom::OptionTable table;
  CLI::App app;
  std::string path;
};

TEST_F(OptionsTest, FlagsSetFields) {
  parse({"--batch-size", "128", "--lr", "0.5", "--model", "mlp", "--no-eval"});
  EXPECT_EQ(s.batch, 128);
  EXPECT_DOUBLE_EQ(s.lr, 0.5);
  EXPECT_EQ(s.model, "mlp");
  EXPECT_FALSE(s.eval);
  EXPECT_TRUE(table.given_on_command_line("lr"));
}

TEST_F(OptionsTest, FileSetsFieldsAndFlagsWin) {
  parse({"--lr", "0.5"});
  table.load_toml(write_toml("lr = 0.01\nbatch-size = 32\nmodel = \"mlp\"\neval = false\nshard_weights = [3, 1, 1]\n"));
  EXPECT_DOUBLE_EQ(s.lr, 0.5);  // the flag wins
  EXPECT_EQ(s.batch, 32);
  EXPECT_EQ(s.model, "mlp");
  EXPECT_FALSE(s.eval);
  EXPECT_EQ(s.weights, "3,1,1");
}

TEST_F(OptionsTest, UnknownKeyIsNamed) {
  parse({});
  try {
    table.load_toml(write_toml("lr = 0.1\nlearning-rate = 0.2\n"));
    FAIL();
  } catch (const loom::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("unknown key 'learning-rate'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

TEST_F(OptionsTest, BadTypesAreNamed) {
  parse({});
  try {
    table.load_toml(write_toml("batch-size = \"big\"\n"));
    FAIL();
  } catch (const loom::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("key 'batch-size' must be an integer, got a string"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(table.load_toml(write_toml("eval = 1\n")), loom::ConfigError);
  EXPECT_THROW(table.load_toml(write_toml("lr = [1]\n")), loom::ConfigError);
  // An integer is a fine number.
  table.load_toml(write_toml("lr = 2\n"));
  EXPECT_DOUBLE_EQ(s.lr, 2.0);
}

TEST_F(OptionsTest, SyntaxErrorsNameFileAndLine) {
  parse({});
  try {
    table.load_toml(write_toml("lr = 0.1\nbatch-size = = 3\n"));
    FAIL();
  } catch (const loom::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(path + ":2:"), std::string::npos) << e.what();
  }
}

TEST_F(OptionsTest, BadFlagValueIsRejectedByTheParser) {
  EXPECT_THROW(parse({"--batch-size", "abc"}), CLI::ParseError);
}

}  // namespace

TEST(OptionsGivenArgs, ReproducesTheCommandLineWithoutTheExcluded) {
  Settings s;
  loom::OptionTable table;
  CLI::App app;
  table.add("batch-size", &s.batch, "batch");
  table.add("lr", &s.lr, "lr");
  table.add("model", &s.model, "model");
  table.add("eval", &s.eval, "eval");
  table.add_to(app);
  const char* argv[] = {"prog", "--model", "my model.pt", "--no-eval", "--lr", "0.25", "--batch-size", "32"};
  app.parse(8, argv);
  // Declaration order, current values, the excluded left out, the untouched absent.
  EXPECT_EQ(table.given_args({"batch-size"}),
            (std::vector<std::string>{"--lr", "0.25", "--model", "my model.pt", "--no-eval"}));
  Settings fresh;
  loom::OptionTable again;
  CLI::App app2;
  again.add("batch-size", &fresh.batch, "batch");
  again.add("lr", &fresh.lr, "lr");
  again.add("model", &fresh.model, "model");
  again.add("eval", &fresh.eval, "eval");
  again.add_to(app2);
  std::vector<std::string> args = table.given_args();
  args.insert(args.begin(), "prog");
  std::vector<const char*> v;
  for (auto& a : args) v.push_back(a.c_str());
  app2.parse(static_cast<int>(v.size()), v.data());
  EXPECT_EQ(fresh.batch, 32);
  EXPECT_DOUBLE_EQ(fresh.lr, 0.25);
  EXPECT_EQ(fresh.model, "my model.pt");
  EXPECT_FALSE(fresh.eval);
}
