// Real programs on the mount: the tools users run every day must work exactly as on a local disk.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <iterator>
#include <set>

#include "harness.hpp"

namespace veiltest {
namespace {

class RealPrograms : public MountedTest<RealPrograms> {
 public:
  static constexpr const char* kSuiteName = "RealPrograms";

 protected:
  void SetUp() override {
    MountedTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    // Distinctive strings from the real files copied in below: none may show up in the cipher dir.
    suite().add_marker("crypto_aead_aes256gcm_encrypt");
    suite().add_marker("crypto_secretstream_xchacha20poly1305");
    suite().add_marker("veilmark sqlite row");
    suite().add_marker("veilmark commit message");
  }

  // Runs a shell script and fails the test with its output when it does not exit 0.
  static std::string must(const std::string& script, const std::string& cwd = "") {
    RunOptions o;
    o.cwd = cwd;
    o.timeout = std::chrono::seconds(180);
    auto r = sh(script, o);
    EXPECT_EQ(r.status, 0) << "script failed" << (r.timed_out ? " (timed out)" : "") << ":\n"
                           << script << "\n--- output:\n"
                           << r.output.substr(0, 6000);
    return r.output;
  }

  // A real tree to copy: the libsodium headers and some documentation directories (with their symlinks).
  static std::string source_tree() {
    static TempDir tree("realtree");
    static bool made = false;
    if (!made) {
      made = true;
      must("mkdir -p " + tree.path() + "/src/veilmark_doc && cp -a /usr/include/sodium " + tree.path() +
           "/src/ && cp -a /usr/include/sodium.h " + tree.path() +
           "/src/ && for d in $(ls /usr/share/doc | head -n 60); do cp -a /usr/share/doc/$d " + tree.path() +
           "/src/veilmark_doc/; done && ln -s sodium/core.h " + tree.path() +
           "/src/link_to_core && ln -s /nonexistent/dangling " + tree.path() + "/src/dangling");
    }
    return tree.path() + "/src";
  }

  // Path, type, mode, owner, group, mtime (ns) and, for non-directories, size and link target of every entry.
  static std::vector<std::string> listing(const std::string& root) {
    std::string out = must("cd '" + root +
                           "' && find . -printf '%p %y %m %U %G %T@ ' -a \\( -type d -printf '-\\n' -o -printf '%s "
                           "%l\\n' \\) | LC_ALL=C sort");
    std::vector<std::string> lines;
    for (size_t i = 0, j; i < out.size(); i = j + 1) {
      j = out.find('\n', i);
      if (j == std::string::npos) j = out.size();
      lines.push_back(out.substr(i, j - i));
    }
    return lines;
  }
  // The entries whose metadata differ (at most 20), or empty.
  static std::string listing_difference(const std::string& a, const std::string& b) {
    auto la = listing(a), lb = listing(b);
    std::vector<std::string> only_a, only_b;
    std::set_difference(la.begin(), la.end(), lb.begin(), lb.end(), std::back_inserter(only_a));
    std::set_difference(lb.begin(), lb.end(), la.begin(), la.end(), std::back_inserter(only_b));
    std::string d;
    for (size_t i = 0; i < only_a.size() && i < 20; ++i) d += "  original: " + only_a[i] + "\n";
    for (size_t i = 0; i < only_b.size() && i < 20; ++i) d += "  copy:     " + only_b[i] + "\n";
    return d;
  }
};

TEST_F(RealPrograms, CpArchiveOfARealTreeThenDiffIsClean) {
  std::string src = source_tree();
  must("cp -a '" + src + "' '" + at("copy") + "'");
  must("diff -r --no-dereference '" + src + "' '" + at("copy") + "'");
  EXPECT_EQ(listing_difference(src, at("copy")), "") << "cp -a must preserve types, modes, owners, times and sizes";
  // And back out again: the copy read from the mount equals the original.
  TempDir back("realtree-back");
  must("cp -a '" + at("copy") + "' '" + back.path() + "/out'");
  must("diff -r --no-dereference '" + src + "' '" + back.path() + "/out'");
  suite().ledger().keep(rel("copy/sodium/crypto_aead_aes256gcm.h"), read_file(src + "/sodium/crypto_aead_aes256gcm.h"));
}

TEST_F(RealPrograms, TarCreateAndExtractRoundTrips) {
  std::string src = source_tree();
  // POSIX (pax) format keeps nanosecond times, so the extracted tree can be compared exactly.
  must("tar --format=posix -C '" + src + "' -cf '" + at("tree.tar") + "' .");
  must("mkdir '" + at("extracted") + "' && tar -C '" + at("extracted") + "' -xpf '" + at("tree.tar") + "'");
  must("diff -r --no-dereference '" + src + "' '" + at("extracted") + "'");
  EXPECT_EQ(listing_difference(src, at("extracted")), "");
  // tar reading the mount produces an archive with the same contents as one made from the original.
  TempDir t("tar");
  must("tar --format=posix -C '" + at("extracted") + "' -cf '" + t.path() + "/a.tar' . && mkdir '" + t.path() +
       "/x' && tar -C '" + t.path() + "/x' -xf '" + t.path() + "/a.tar' && diff -r --no-dereference '" + src + "' '" +
       t.path() + "/x'");
  must("tar -tvf '" + at("tree.tar") + "' > /dev/null && tar -df '" + at("tree.tar") + "' -C '" + at("extracted") +
       "'");
}

TEST_F(RealPrograms, GitInitAddCommitLogFsck) {
  std::string src = source_tree();
  std::string repo = at("repo");
  const std::string git = "git -c user.name=veil -c user.email=veil@example.invalid -c init.defaultBranch=main ";
  must("mkdir '" + repo + "' && cd '" + repo + "' && " + git + "init -q && cp -a '" + src + "/sodium' . && " + git +
       "add -A && " + git + "commit -q -m 'veilmark commit message 1' && echo change >> sodium/core.h && " + git +
       "commit -q -am 'veilmark commit message 2' && git mv sodium/core.h sodium/core_renamed.h && " + git +
       "commit -q -m 'veilmark commit message 3' && " + git + "gc -q && " + git + "fsck --full --strict");
  std::string log = must("cd '" + repo + "' && git log --oneline | wc -l && git status --porcelain | wc -l");
  EXPECT_EQ(log, "3\n0\n") << "three commits, clean work tree";
  must("cd '" + repo + "' && git show HEAD~1:sodium/core.h | tail -n 1 | grep -qx change");
  std::string clone = at("clone");
  must("git clone -q '" + repo + "' '" + clone + "' && cd '" + clone + "' && git fsck --full --strict && diff -r '" +
       repo + "/sodium' '" + clone + "/sodium'");
}

TEST_F(RealPrograms, Sqlite3InWalModeKeepsItsIntegrity) {
  std::string db = at("veilmark.db");
  std::string script = "PRAGMA journal_mode=WAL;\nCREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, n INTEGER);\n";
  for (int i = 0; i < 300; ++i) {
    script += "BEGIN;\nINSERT INTO t(v, n) VALUES ('veilmark sqlite row " + std::to_string(i) + "' || hex(randomblob(" +
              std::to_string(50 + i % 400) + ")), " + std::to_string(i) + ");\n";
    if (i % 7 == 3) script += "UPDATE t SET n = n + 1000 WHERE id % 5 = " + std::to_string(i % 5) + ";\n";
    if (i % 11 == 5) script += "DELETE FROM t WHERE id = " + std::to_string(i / 2) + ";\n";
    script += "COMMIT;\n";
    if (i % 100 == 99) script += "PRAGMA wal_checkpoint(TRUNCATE);\n";
  }
  RunOptions o;
  o.stdin_data = script;
  o.timeout = std::chrono::seconds(180);
  auto r = run({"sqlite3", "-bail", db}, o);
  ASSERT_EQ(r.status, 0) << r.output.substr(0, 4000);
  // journal_mode prints "wal"; each TRUNCATE checkpoint "0|0|0" (not busy, nothing left in the log).
  EXPECT_EQ(r.output, "wal\n0|0|0\n0|0|0\n0|0|0\n");
  auto check = [&] {
    RunOptions q;
    q.stdin_data = "PRAGMA integrity_check;\nSELECT count(*) FROM t;\n";
    return run({"sqlite3", "-bail", db}, q);
  };
  auto c = check();
  ASSERT_EQ(c.status, 0) << c.output;
  std::string expected_count;
  {
    // Rows inserted minus rows deleted (a DELETE of an id already deleted deletes nothing).
    std::set<int> alive;
    int next = 1;
    for (int i = 0; i < 300; ++i) {
      alive.insert(next++);
      if (i % 11 == 5) alive.erase(i / 2);
    }
    expected_count = std::to_string(alive.size());
  }
  EXPECT_EQ(c.output, "ok\n" + expected_count + "\n");
  // Again after unmount and remount: the WAL and the database file are complete on disk.
  EXPECT_NO_ERROR(suite().remount());
  ASSERT_TRUE(suite().mounted()) << "no mount after remount";
  c = check();
  ASSERT_EQ(c.status, 0) << c.output;
  EXPECT_EQ(c.output, "ok\n" + expected_count + "\n");
}

TEST_F(RealPrograms, RsyncArchiveThenChecksumDryRunShowsNothing) {
  std::string src = source_tree();
  must("rsync -a '" + src + "/' '" + at("mirror") + "/'");
  std::string out = must("rsync -a -c -n -i '" + src + "/' '" + at("mirror") + "/'");
  EXPECT_EQ(out, "") << "rsync found differences after copying:\n" << out.substr(0, 3000);
  // And in the other direction, the mount as the source.
  TempDir t("rsync");
  must("rsync -a '" + at("mirror") + "/' '" + t.path() + "/'");
  out = must("rsync -a -c -n -i '" + src + "/' '" + t.path() + "/'");
  EXPECT_EQ(out, "");
}

TEST_F(RealPrograms, MmapSharedWritesPersistAcrossRemount) {
  const size_t kSize = 3 * 4096 + 123;
  std::string want = marker_content(kSize, 30);
  {
    UniqueFd fd(::open(at("mapped").c_str(), O_CREAT | O_RDWR, 0644));
    ASSERT_TRUE(fd);
    ASSERT_EQ(::ftruncate(fd.get(), static_cast<off_t>(kSize)), 0);
    void* p = ::mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
    ASSERT_NE(p, MAP_FAILED) << "mmap MAP_SHARED: " << err_name(errno);
    std::memcpy(p, want.data(), kSize);
    ASSERT_EQ(::msync(p, kSize, MS_SYNC), 0) << err_name(errno);
    // read(2) through another descriptor sees what was written through the mapping.
    EXPECT_EQ(first_difference(read_file(at("mapped")), want), "");
    // Then a write(2) is seen through the mapping.
    UniqueFd other(::open(at("mapped").c_str(), O_RDWR));
    write_fd_at(other.get(), 5000, "via-write");
    want.replace(5000, 9, "via-write");
    EXPECT_EQ(std::string(static_cast<char*>(p) + 5000, 9), "via-write");
    ASSERT_EQ(::munmap(p, kSize), 0);
  }
  EXPECT_NO_ERROR(suite().remount());
  ASSERT_TRUE(suite().mounted()) << "no mount after remount";
  EXPECT_EQ(first_difference(read_file(at("mapped")), want), "");
  // Mapped reads of a file written with write(2).
  UniqueFd fd(::open(at("mapped").c_str(), O_RDONLY));
  void* p = ::mmap(nullptr, kSize, PROT_READ, MAP_SHARED, fd.get(), 0);
  ASSERT_NE(p, MAP_FAILED) << err_name(errno);
  EXPECT_EQ(first_difference(std::string(static_cast<char*>(p), kSize), want), "");
  ::munmap(p, kSize);
  suite().ledger().keep(rel("mapped"), want);
}

}  // namespace
}  // namespace veiltest
