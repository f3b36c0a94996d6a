// Words for TOML values in error messages ("must be a number, got a string"), shared by
// the config-file reader (core/options.cpp) and the planner's cluster files
// (plan/cluster.cpp). Private to loom: it names toml++'s type.
#pragma once

#include <toml++/toml.h>

#include <string>

namespace loom {

// "a string", "an integer", "a number", "a boolean", "an array", "a table" or "a date/time".
std::string toml_type_name(const toml::node& node);

}  // namespace loom
