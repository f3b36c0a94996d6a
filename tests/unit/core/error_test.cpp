#include "loom/core/error.h"

#include <gtest/gtest.h>

namespace {

TEST(Error, CheckThrowsTypedErrorWithLocation) {
  try {
    const int n = -3;
    LOOM_CHECK(n > 0, loom::ConfigError, "--batch-size must be positive, got {}", n);
    FAIL() << "no throw";
  } catch (const loom::ConfigError& e) {
    EXPECT_STREQ(e.what(), "--batch-size must be positive, got -3");
    EXPECT_STREQ(e.kind(), "config error");
    EXPECT_NE(e.location().find("error_test.cpp:"), std::string::npos) << e.location();
  }
}

TEST(Error, TimeoutIsACommError) {
  EXPECT_THROW(LOOM_THROW(loom::TimeoutError, "allreduce timed out"), loom::CommError);
}

TEST(Error, MessagesAreOneLine) {
  loom::Error e("first line\nsecond line\n");
  EXPECT_STREQ(e.what(), "first line | second line");
}

TEST(Error, CheckPassesWhenTrue) { EXPECT_NO_THROW(LOOM_CHECK(1 + 1 == 2, loom::Error, "never")); }

}  // namespace
