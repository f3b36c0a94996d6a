// Option values that name one of a fixed set (--optimizer sgd|adam, --partition ...):
// each enum lists its names once, in a table next to its parse function, and every
// parse error reads the same: "--FLAG: unknown value 'x' (expected one of: a, b, c)".
#pragma once

#include <fmt/format.h>

#include <string>
#include <utility>

#include "loom/core/error.h"

namespace loom {

template <class Enum>
struct Choice {
  const char* name;
  Enum value;
};

// The value named `name`, or ConfigError naming `flag` and every allowed name.
template <class Enum, size_t N>
Enum parse_choice(const char* flag, const std::string& name, const Choice<Enum> (&choices)[N]) {
  std::string expected;
  for (const auto& c : choices) {
    if (name == c.name) return c.value;
    expected += expected.empty() ? c.name : std::string(", ") + c.name;
  }
  LOOM_THROW(ConfigError, "--{}: unknown value '{}' (expected one of: {})", flag, name, expected);
}

// The name of `value` ("?" if the table lacks it).
template <class Enum, size_t N>
const char* choice_name(Enum value, const Choice<Enum> (&choices)[N]) {
  for (const auto& c : choices) {
    if (c.value == value) return c.name;
  }
  return "?";
}

}  // namespace loom
