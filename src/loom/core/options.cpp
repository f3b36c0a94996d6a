#include "loom/core/options.h"

#include <toml++/toml.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <functional>
#include <limits>

#include "loom/core/error.h"
#include "loom/core/toml_names.h"

namespace loom {

struct OptionTable::Entry {
  std::string name;
  std::string help;
  std::function<CLI::Option*(CLI::App&)> register_flag;
  std::function<void(const toml::node&, const std::string& where)> set_from_toml;
  std::function<std::vector<std::string>()> as_args;  // the field's value as command-line arguments
  bool is_flag = false;                               // bool: --name / --no-name, no value
  CLI::Option* flag = nullptr;
};

namespace {

template <typename T>
std::function<void(const toml::node&, const std::string&)> toml_setter(T* field) {
  return [field](const toml::node& node, const std::string& where) {
    if constexpr (std::is_same_v<T, bool>) {
      LOOM_CHECK(node.is_boolean(), ConfigError, "{} must be true or false, got {}", where, toml_type_name(node));
      *field = node.as_boolean()->get();
    } else if constexpr (std::is_integral_v<T>) {
      LOOM_CHECK(node.is_integer(), ConfigError, "{} must be an integer, got {}", where, toml_type_name(node));
      const int64_t v = node.as_integer()->get();
      LOOM_CHECK(v >= std::numeric_limits<T>::min() && v <= std::numeric_limits<T>::max(), ConfigError,
                 "{} = {} is out of range", where, v);
      *field = static_cast<T>(v);
    } else if constexpr (std::is_floating_point_v<T>) {
      LOOM_CHECK(node.is_number(), ConfigError, "{} must be a number, got {}", where, toml_type_name(node));
      *field = node.is_integer() ? static_cast<T>(node.as_integer()->get())
                                 : static_cast<T>(node.as_floating_point()->get());
    } else {
      // Strings; a list of numbers (e.g. shard-weights = [3, 1, 1]) is accepted as "3,1,1".
      if (node.is_array()) {
        std::string joined;
        for (const auto& item : *node.as_array()) {
          LOOM_CHECK(item.is_number() || item.is_string(), ConfigError, "{} must be a string or a list of numbers",
                     where);
          if (!joined.empty()) joined += ",";
          if (item.is_integer())
            joined += std::to_string(item.as_integer()->get());
          else if (item.is_floating_point())
            joined += fmt::format("{}", item.as_floating_point()->get());
          else
            joined += item.as_string()->get();
        }
        *field = joined;
        return;
      }
      LOOM_CHECK(node.is_string(), ConfigError, "{} must be a string, got {}", where, toml_type_name(node));
      *field = node.as_string()->get();
    }
  };
}

template <typename T>
std::unique_ptr<OptionTable::Entry> make_entry(const std::string& name, T* field, const std::string& help,
                                               std::function<CLI::Option*(CLI::App&)> reg) {
  auto e = std::make_unique<OptionTable::Entry>();
  e->name = name;
  e->help = help;
  e->register_flag = std::move(reg);
  e->set_from_toml = toml_setter(field);
  e->is_flag = std::is_same_v<T, bool>;
  e->as_args = [name, field]() -> std::vector<std::string> {
    if constexpr (std::is_same_v<T, bool>) {
      return {(*field ? "--" : "--no-") + name};
    } else if constexpr (std::is_same_v<T, std::string>) {
      return {"--" + name, *field};
    } else {
      return {"--" + name, fmt::format("{}", *field)};
    }
  };
  return e;
}

}  // namespace

OptionTable::OptionTable() = default;
OptionTable::~OptionTable() = default;

void OptionTable::add(const std::string& name, bool* field, const std::string& help) {
  entries_.push_back(make_entry(name, field, help, [=](CLI::App& app) {
    // --flag, --flag=true|false, --no-flag.
    return app.add_flag("--" + name + ",!--no-" + name, *field, help);
  }));
}
void OptionTable::add(const std::string& name, int* field, const std::string& help) {
  entries_.push_back(make_entry(name, field, help, [=](CLI::App& app) {
    return app.add_option("--" + name, *field, help)
        ->capture_default_str()
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  }));
}
void OptionTable::add(const std::string& name, int64_t* field, const std::string& help) {
  entries_.push_back(make_entry(name, field, help, [=](CLI::App& app) {
    return app.add_option("--" + name, *field, help)
        ->capture_default_str()
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  }));
}
void OptionTable::add(const std::string& name, double* field, const std::string& help) {
  entries_.push_back(make_entry(name, field, help, [=](CLI::App& app) {
    return app.add_option("--" + name, *field, help)
        ->capture_default_str()
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  }));
}
void OptionTable::add(const std::string& name, std::string* field, const std::string& help) {
  entries_.push_back(make_entry(name, field, help, [=](CLI::App& app) {
    return app.add_option("--" + name, *field, help)
        ->capture_default_str()
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  }));
}

void OptionTable::add_to(CLI::App& app) {
  for (auto& e : entries_) e->flag = e->register_flag(app);
}

bool OptionTable::given_on_command_line(const std::string& name) const {
  const Entry* e = find(name);
  return e && e->flag && e->flag->count() > 0;
}

std::vector<std::string> OptionTable::given_args(const std::vector<std::string>& except) const {
  std::vector<std::string> out;
  for (const auto& e : entries_) {
    if (!e->flag || e->flag->count() == 0) continue;
    if (std::find(except.begin(), except.end(), e->name) != except.end()) continue;
    for (auto& a : e->as_args()) out.push_back(std::move(a));
  }
  return out;
}

OptionTable::Entry* OptionTable::find(const std::string& key) const {
  std::string dashed = key;
  std::replace(dashed.begin(), dashed.end(), '_', '-');
  for (const auto& e : entries_) {
    if (e->name == dashed) return e.get();
  }
  return nullptr;
}

void OptionTable::load_toml(const std::string& path) {
  toml::table table;
  try {
    table = toml::parse_file(path);
  } catch (const toml::parse_error& err) {
    const auto& where = err.source().begin;
    LOOM_THROW(ConfigError, "{}:{}:{}: {}", path, where.line, where.column, err.description());
  }
  for (const auto& [key, node] : table) {
    const std::string name(key.str());
    Entry* e = find(name);
    if (!e) {
      LOOM_THROW(ConfigError, "{}: unknown key '{}' (run 'loom train --help' for the valid keys)", path, name);
    }
    if (e->flag && e->flag->count() > 0) continue;  // the command line wins
    e->set_from_toml(node, fmt::format("{}: key '{}'", path, name));
  }
}

bool OptionTable::takes_value(const std::string& name) const {
  const Entry* e = find(name);
  return !e || !e->is_flag;
}

std::vector<std::string> OptionTable::names() const {
  std::vector<std::string> out;
  for (const auto& e : entries_) out.push_back(e->name);
  return out;
}

}  // namespace loom
