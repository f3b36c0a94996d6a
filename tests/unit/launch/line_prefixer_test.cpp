#include "loom/launch/line_prefixer.h"

#include <gtest/gtest.h>

namespace loom::launch {
namespace {

TEST(LinePrefixer, PrefixesEachCompleteLine) {
  LinePrefixer p("[3]: ");
  EXPECT_EQ(p.feed("a\nbb\n"), "[3]: a\n[3]: bb\n");
  EXPECT_FALSE(p.has_partial());
  EXPECT_EQ(p.flush(), "");
}

TEST(LinePrefixer, HoldsPartialLinesUntilComplete) {
  LinePrefixer p("[0]: ");
  EXPECT_EQ(p.feed("hel"), "");
  EXPECT_TRUE(p.has_partial());
  EXPECT_EQ(p.feed("lo wo"), "");
  EXPECT_EQ(p.feed("rld\nnext"), "[0]: hello world\n");
  EXPECT_EQ(p.flush(), "[0]: next\n");
  EXPECT_EQ(p.flush(), "");
}

TEST(LinePrefixer, KeepsEmptyLinesAndCarriageReturns) {
  LinePrefixer p("> ");
  EXPECT_EQ(p.feed("\n\nx\r\n"), "> \n> \n> x\r\n");
}

TEST(LinePrefixer, ByteByByteGivesTheSameLines) {
  const std::string input = "first line\nsecond\n\nthird without end";
  LinePrefixer whole("[1]: ");
  LinePrefixer bytes("[1]: ");
  std::string a = whole.feed(input);
  a += whole.flush();
  std::string b;
  for (char c : input) b += bytes.feed(std::string_view(&c, 1));
  b += bytes.flush();
  EXPECT_EQ(a, b);
  EXPECT_EQ(a, "[1]: first line\n[1]: second\n[1]: \n[1]: third without end\n");
}

TEST(LinePrefixer, SplitsOverlongLinesIntoBoundedPieces) {
  LinePrefixer p("p:", 4);
  EXPECT_EQ(p.feed("abcdefghij\n"), "p:abcd\np:efgh\np:ij\n");
  // Exactly max_line bytes is one line, also when the newline comes in a later chunk.
  EXPECT_EQ(p.feed("wxyz"), "");
  EXPECT_EQ(p.feed("\n"), "p:wxyz\n");
  // A partial line that outgrows the bound is emitted without waiting for its end.
  EXPECT_EQ(p.feed("12"), "");
  EXPECT_EQ(p.feed("3456"), "p:1234\n");
  EXPECT_EQ(p.flush(), "p:56\n");
}

TEST(LinePrefixer, EmptyPrefixOnlyBuffersLines) {
  LinePrefixer p("");
  EXPECT_EQ(p.feed("a"), "");
  EXPECT_EQ(p.feed("b\n"), "ab\n");
}

}  // namespace
}  // namespace loom::launch
