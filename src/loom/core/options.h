// OptionTable: one declaration of a program's settings, bound both to command-line flags
// (CLI11) and to keys of a TOML file (toml++), so that the two can never drift apart.
//
//   OptionTable t;
//   t.add("batch-size", &cfg.batch_size, "global batch per step");
//   t.add_to(app);                 // registers --batch-size on a CLI::App
//   app.parse(argc, argv);
//   t.load_toml("job.toml");       // keys the command line did not set; flags win
//
// TOML keys are the flag names (`batch-size = 128`; `batch_size` is accepted too). An
// unknown key or a value of the wrong type is a ConfigError naming the file and the key.
// Not thread-safe; bound fields must outlive the table.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace CLI {
class App;
class Option;
}  // namespace CLI

namespace loom {

class OptionTable {
 public:
  OptionTable();
  ~OptionTable();
  OptionTable(const OptionTable&) = delete;
  OptionTable& operator=(const OptionTable&) = delete;

  void add(const std::string& name, bool* field, const std::string& help);
  void add(const std::string& name, int* field, const std::string& help);
  void add(const std::string& name, int64_t* field, const std::string& help);
  void add(const std::string& name, double* field, const std::string& help);
  void add(const std::string& name, std::string* field, const std::string& help);

  // Registers every option as --name on `app`. Call once, before parsing.
  void add_to(CLI::App& app);
  // True when --name was given on the command line (after parsing).
  bool given_on_command_line(const std::string& name) const;
  // The options given on the command line, as arguments that set them to their current
  // values ({"--batch-size", "128", "--no-eval", ...}), in declaration order, leaving out
  // the names in `except`.
  std::vector<std::string> given_args(const std::vector<std::string>& except = {}) const;
  // Applies the file's keys that were not given on the command line.
  void load_toml(const std::string& path);
  // False for an on/off flag (--name / --no-name), true for an option that takes a value
  // (and for a name the table does not know).
  bool takes_value(const std::string& name) const;
  // Names of all options, in declaration order.
  std::vector<std::string> names() const;

  struct Entry;  // defined in options.cpp (keeps CLI11 and toml++ out of this header)

 private:
  Entry* find(const std::string& key) const;
  std::vector<std::unique_ptr<Entry>> entries_;
};

}  // namespace loom
