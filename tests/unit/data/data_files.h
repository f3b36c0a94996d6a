// Test support for the file sources: a scratch directory per test, and .npy files
// written byte by byte (so the tests do not depend on NumPy, and can write broken ones).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "loom/core/error.h"
#include "support/temp_path.h"

namespace loom::data::testing {

// A fresh directory per test (the pid and the test's name), removed afterwards.
class DataFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = loom::test::temp_path(std::string(info->test_suite_name()) + "-" + info->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string path(const std::string& name) const { return (std::filesystem::path(dir_) / name).string(); }

  std::string dir_;
};

inline void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

// "(3, 2)", "(5,)", "()": a shape as Python writes a tuple.
inline std::string py_tuple(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t k = 0; k < shape.size(); ++k) s += (k ? ", " : "") + std::to_string(shape[k]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

// The header dict as numpy.lib.format writes it.
inline std::string npy_dict(const std::string& descr, const std::vector<int64_t>& shape, bool fortran = false) {
  return "{'descr': '" + descr + "', 'fortran_order': " + (fortran ? "True" : "False") +
         ", 'shape': " + py_tuple(shape) + ", }";
}

// A whole .npy file: magic, version `major`.0, the header `dict` padded with spaces and
// a newline so the data starts at a multiple of 64, then `payload`.
inline std::string npy_file(const std::string& dict, const std::string& payload, int major = 1) {
  const size_t prefix = 6 + 2 + (major == 1 ? 2 : 4);
  std::string header = dict;
  while ((prefix + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string out = "\x93NUMPY";
  out += static_cast<char>(major);
  out += '\0';
  const size_t len = header.size();
  for (size_t k = 0; k < (major == 1 ? 2u : 4u); ++k) out += static_cast<char>((len >> (8 * k)) & 0xff);
  return out + header + payload;
}

template <typename T>
std::string raw_bytes(const std::vector<T>& values) {
  std::string s(values.size() * sizeof(T), '\0');
  if (!values.empty()) std::memcpy(s.data(), values.data(), s.size());
  return s;
}

// A .npy file of `values` with `descr` and `shape`.
template <typename T>
std::string npy_of(const std::string& descr, const std::vector<int64_t>& shape, const std::vector<T>& values,
                   int major = 1) {
  return npy_file(npy_dict(descr, shape), raw_bytes(values), major);
}

// EXPECT_TRUE(contains(message, part)), printing the message when it fails.
inline ::testing::AssertionResult contains(const std::string& message, const std::string& part) {
  if (message.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << message << "' does not contain '" << part << "'";
}

// The message of the `E` that `fn` throws, or "" (and a test failure) when it throws
// none.
template <typename E = DataError>
std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const E& e) {
    return e.what();
  }
  ADD_FAILURE() << "no error thrown";
  return "";
}

}  // namespace loom::data::testing
