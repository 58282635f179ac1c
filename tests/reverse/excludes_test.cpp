// gitignore-style excludes of the reverse view, pattern by pattern.
#include "veilfs/reverse/excludes.hpp"

#include <gtest/gtest.h>

#include "veilfs/util/error.hpp"

namespace veil::testing {
namespace {

using reverse::Excludes;

Excludes of(std::initializer_list<const char*> patterns) {
  Excludes e;
  for (const char* p : patterns) e.add(p);
  return e;
}

TEST(Excludes, ABareNameMatchesAtAnyDepthAndAnchoredPatternsOnlyFromTheTop) {
  auto e = of({"node_modules", "/build", "docs/tmp"});
  EXPECT_TRUE(e.excluded("node_modules", true));
  EXPECT_TRUE(e.excluded("web/app/node_modules", true));
  EXPECT_FALSE(e.excluded("web/node_modules2", true));
  EXPECT_TRUE(e.excluded("build", true));
  EXPECT_FALSE(e.excluded("src/build", true));
  EXPECT_TRUE(e.excluded("docs/tmp", false));
  EXPECT_FALSE(e.excluded("x/docs/tmp", false));
}

TEST(Excludes, WildcardsStayWithinAComponentAndDoubleStarsCrossThem) {
  auto e = of({"*.o", "cache/**", "**/logs", "a/**/z", "f?le", "[abc]x", "[!0-9]y"});
  EXPECT_TRUE(e.excluded("main.o", false));
  EXPECT_TRUE(e.excluded("deep/er/main.o", false));
  EXPECT_FALSE(e.excluded("main.o.c", false));
  EXPECT_TRUE(e.excluded("cache/a/b", false));
  EXPECT_FALSE(e.excluded("cache", true));
  EXPECT_TRUE(e.excluded("logs", true));
  EXPECT_TRUE(e.excluded("x/y/logs", true));
  EXPECT_TRUE(e.excluded("a/z", true));
  EXPECT_TRUE(e.excluded("a/b/c/z", true));
  EXPECT_FALSE(e.excluded("b/a/z", true));
  EXPECT_TRUE(e.excluded("file", false));
  EXPECT_FALSE(e.excluded("fiile", false));
  EXPECT_TRUE(e.excluded("bx", false));
  EXPECT_FALSE(e.excluded("dx", false));
  EXPECT_TRUE(e.excluded("ay", false));
  EXPECT_FALSE(e.excluded("5y", false));
  auto star = of({"a*b"});
  EXPECT_FALSE(star.excluded("a/b", false)) << "* never crosses a /";
}

TEST(Excludes, DirectoryOnlyNegationCommentsAndEscapes) {
  auto e = of({"*.tmp", "!keep.tmp", "out/", "# a comment", "", "\\#hash", "\\!bang", "trail   "});
  EXPECT_TRUE(e.excluded("a.tmp", false));
  EXPECT_FALSE(e.excluded("keep.tmp", false)) << "the last matching pattern decides";
  EXPECT_TRUE(e.excluded("out", true));
  EXPECT_FALSE(e.excluded("out", false)) << "out/ is for directories only";
  EXPECT_FALSE(e.excluded("# a comment", false));
  EXPECT_TRUE(e.excluded("#hash", false));
  EXPECT_TRUE(e.excluded("!bang", false));
  EXPECT_TRUE(e.excluded("trail", false)) << "trailing blanks are not part of a pattern";
  EXPECT_FALSE(e.excluded("x.tmpx", false));
  // Names with bytes that are not UTF-8 and regex characters match literally.
  auto lit = of({"caf\xe9(1).txt", "a+b"});
  EXPECT_TRUE(lit.excluded("caf\xe9(1).txt", false));
  EXPECT_TRUE(lit.excluded("a+b", false));
  EXPECT_FALSE(lit.excluded("aab", false));
}

TEST(Excludes, AnUnreadablePatternOrFileIsAUsageError) {
  Excludes e;
  EXPECT_THROW(e.add("[abc"), Error);
  EXPECT_THROW(e.add("/"), Error);
  EXPECT_THROW(e.add_file("/nonexistent/excludes"), Error);
  EXPECT_TRUE(e.empty());
}

}  // namespace
}  // namespace veil::testing
