// The harness checks itself: a scanner or ledger that cannot fail would make the suite's final checks worthless.
#include "harness.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

namespace veiltest {
namespace {

TEST(HarnessSelfTest, ScannerFindsMarkersInNamesContentsLinksAndXattrs) {
  TempDir t("scan-selftest");
  const std::string d = t.path();
  ASSERT_EQ(::mkdir((d + "/sub").c_str(), 0755), 0);
  write_file(d + "/sub/clean", "nothing to see");
  EXPECT_TRUE(scan_for_plaintext(d, {kNameMarker, kContentMarker}).empty());

  write_file(d + "/sub/" + kNameMarker + "_name", "x");
  write_file(d + "/sub/content", "aaa" + marker_content(100, 1));
  ASSERT_EQ(::symlink((std::string("../") + kNameMarker).c_str(), (d + "/link").c_str()), 0);
  auto found = scan_for_plaintext(d, {kNameMarker, kContentMarker});
  EXPECT_EQ(found.size(), 3u) << ::testing::PrintToString(found);
  // user xattrs work on most backing filesystems; count them only where they do.
  if (::setxattr((d + "/sub/clean").c_str(), "user.x", kContentMarker, strlen(kContentMarker), 0) == 0) {
    EXPECT_EQ(scan_for_plaintext(d, {kNameMarker, kContentMarker}).size(), 4u);
  }
}

TEST(HarnessSelfTest, ScannerFindsMarkersAfterHolesAndAcrossChunks) {
  TempDir t("scan-sparse");
  UniqueFd fd(::open((t.path() + "/sparse").c_str(), O_CREAT | O_RDWR, 0600));
  ASSERT_TRUE(fd);
  // Data after a 3 MiB hole, with the marker straddling the scanner's 1 MiB chunk boundary.
  write_fd_at(fd.get(), 3u << 20, std::string(1 << 20, 'z'));
  write_fd_at(fd.get(), (4u << 20) - 5, kContentMarker);
  write_fd_at(fd.get(), (4u << 20) + 100, std::string(1 << 20, 'z'));
  fd.reset();
  EXPECT_EQ(scan_for_plaintext(t.path(), {kContentMarker}).size(), 1u);
}

TEST(HarnessSelfTest, LedgerReportsAChangedByte) {
  TempDir t("ledger-selftest");
  write_file(t.path() + "/f", "abcdef");
  Ledger l;
  l.keep("f", "abcdef");
  EXPECT_TRUE(l.verify(t.path()).empty());
  write_file(t.path() + "/f", "abcXef");
  auto bad = l.verify(t.path());
  ASSERT_EQ(bad.size(), 1u);
  EXPECT_NE(bad[0].find("offset 3"), std::string::npos) << bad[0];
  l.keep("missing", "");
  EXPECT_EQ(l.verify(t.path()).size(), 2u);
}

TEST(HarnessSelfTest, RunReportsStatusOutputAndTimeout) {
  auto r = sh("echo out; echo err >&2; exit 3");
  EXPECT_EQ(r.status, 3);
  EXPECT_EQ(r.output, "out\nerr\n");
  RunOptions o;
  o.stdin_data = std::string(200000, 'i');
  r = run({"wc", "-c"}, o);
  EXPECT_EQ(r.output, "200000\n");
  o = {};
  o.timeout = std::chrono::seconds(1);
  r = sh("exec sleep 30", o);
  EXPECT_TRUE(r.timed_out);
  EXPECT_NE(r.status, 0);
}

}  // namespace
}  // namespace veiltest
