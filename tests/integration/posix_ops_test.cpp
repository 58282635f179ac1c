// Every filesystem operation through a real mount, with the errno a local filesystem returns.
#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <set>

#include "harness.hpp"

namespace veiltest {
namespace {

class PosixOps : public MountedTest<PosixOps> {
 public:
  static constexpr const char* kSuiteName = "PosixOps";
  // --allow-other so root can test ownership like a multi-user system would see it.
  static std::vector<std::string> mount_args() {
    if (::geteuid() == 0) return {"--allow-other"};
    return {};
  }

 protected:
  void SetUp() override {
    MountedTest::SetUp();
    old_umask_ = ::umask(0);  // modes below are checked exactly
  }
  void TearDown() override { ::umask(old_umask_); }

  static struct stat lstat_of(const std::string& p) {
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0) throw std::runtime_error("lstat " + p + ": " + err_name(errno));
    return st;
  }

  mode_t old_umask_ = 022;
};

int renameat2_(const std::string& a, const std::string& b, unsigned flags) {
  return static_cast<int>(::syscall(SYS_renameat2, AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str(), flags));
}

// ---- lookup / getattr / readdir ----

TEST_F(PosixOps, LookupOfMissingNamesGivesENOENT) {
  struct stat st {};
  EXPECT_ERRNO(::stat(at("missing").c_str(), &st), ENOENT);
  EXPECT_ERRNO(::lstat(at("missing/deeper").c_str(), &st), ENOENT);
  EXPECT_ERRNO(::open(at("missing").c_str(), O_RDONLY), ENOENT);
  EXPECT_ERRNO(::unlink(at("missing").c_str()), ENOENT);
  EXPECT_ERRNO(::rmdir(at("missing").c_str()), ENOENT);
  EXPECT_ERRNO(::rename(at("missing").c_str(), at("other").c_str()), ENOENT);
  char buf[16];
  EXPECT_ERRNO(::readlink(at("missing").c_str(), buf, sizeof buf), ENOENT);
  EXPECT_ERRNO(::mkdir(at("missing/sub").c_str(), 0755), ENOENT);
}

TEST_F(PosixOps, PathThroughARegularFileGivesENOTDIR) {
  write_file(at("file"), "x");
  struct stat st {};
  EXPECT_ERRNO(::stat(at("file/child").c_str(), &st), ENOTDIR);
  EXPECT_ERRNO(::open(at("file/child").c_str(), O_RDONLY), ENOTDIR);
  EXPECT_ERRNO(::mkdir(at("file/child").c_str(), 0755), ENOTDIR);
  EXPECT_ERRNO(::open(at("file").c_str(), O_RDONLY | O_DIRECTORY), ENOTDIR);
  EXPECT_ERRNO(::rmdir(at("file").c_str()), ENOTDIR);
  EXPECT_EQ(::opendir(at("file").c_str()), nullptr);
}

TEST_F(PosixOps, DirectoryOpenedForWritingGivesEISDIR) {
  ASSERT_OK(::mkdir(at("d").c_str(), 0755));
  EXPECT_ERRNO(::open(at("d").c_str(), O_WRONLY), EISDIR);
  EXPECT_ERRNO(::open(at("d").c_str(), O_RDWR), EISDIR);
  EXPECT_ERRNO(::unlink(at("d").c_str()), EISDIR);
  UniqueFd fd(::open(at("d").c_str(), O_RDONLY | O_DIRECTORY));
  ASSERT_TRUE(fd);
  char buf[8];
  EXPECT_ERRNO(::read(fd.get(), buf, sizeof buf), EISDIR);
}

TEST_F(PosixOps, ReaddirListsExactlyTheEntriesWithTheirTypes) {
  std::set<std::string> want;
  for (int i = 0; i < 60; ++i) {
    std::string n = std::string(kNameMarker) + "_f" + std::to_string(i);
    write_file(at(n), "");
    want.insert(n);
  }
  for (int i = 0; i < 5; ++i) {
    std::string n = "sub" + std::to_string(i);
    ASSERT_OK(::mkdir(at(n).c_str(), 0755));
    want.insert(n);
  }
  ASSERT_OK(::symlink("target", at("lnk").c_str()));
  want.insert("lnk");

  DIR* d = ::opendir(dir().c_str());
  ASSERT_NE(d, nullptr);
  std::set<std::string> got;
  int dots = 0;
  while (auto* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n == "." || n == "..") {
      ++dots;
      continue;
    }
    EXPECT_TRUE(got.insert(n).second) << "duplicate entry " << n;
    unsigned char want_type = n.rfind("sub", 0) == 0 ? DT_DIR : n == "lnk" ? DT_LNK : DT_REG;
    if (e->d_type != DT_UNKNOWN) {
      EXPECT_EQ(e->d_type, want_type) << n;
    }
    struct stat st = lstat_of(at(n));
    EXPECT_EQ(e->d_ino, st.st_ino) << "readdir and stat disagree on the inode number of " << n;
  }
  ::closedir(d);
  EXPECT_EQ(dots, 2) << "'.' and '..' must both be listed";
  EXPECT_EQ(got, want);

  ASSERT_OK(::unlink(at(std::string(kNameMarker) + "_f7").c_str()));
  want.erase(std::string(kNameMarker) + "_f7");
  auto now = list_dir(dir());
  EXPECT_EQ(std::set<std::string>(now.begin(), now.end()), want);
}

TEST_F(PosixOps, ReaddirOfALargeDirectoryContinuesAcrossBuffers) {
  // More entries than fit in one readdir reply: offsets between calls must be right, nothing lost or repeated.
  std::set<std::string> want;
  for (int i = 0; i < 700; ++i) {
    std::string n = std::string(kNameMarker) + "_entry_with_a_longish_name_" + std::to_string(i);
    UniqueFd fd(::open(at(n).c_str(), O_CREAT | O_WRONLY, 0644));
    ASSERT_TRUE(fd) << err_name(errno);
    want.insert(n);
  }
  auto got = list_dir(dir());
  EXPECT_EQ(got.size(), want.size());
  EXPECT_EQ(std::set<std::string>(got.begin(), got.end()), want);
}

TEST_F(PosixOps, TelldirSeekdirAndRewinddirResumeTheListingWhereTheySaid) {
  // The daemon streams listings (offsets are the backing directory's positions): a saved position must resume
  // the same sequence, also after other reads moved the stream, and a rewind must list everything again.
  for (int i = 0; i < 500; ++i) {
    UniqueFd fd(::open(at(std::string(kNameMarker) + "_seek_" + std::to_string(i)).c_str(), O_CREAT | O_WRONLY, 0644));
    ASSERT_TRUE(fd) << err_name(errno);
  }
  DIR* d = ::opendir(dir().c_str());
  ASSERT_NE(d, nullptr);
  auto read_rest = [&] {
    std::vector<std::string> v;
    while (auto* e = ::readdir(d)) v.emplace_back(e->d_name);
    return v;
  };
  std::vector<std::string> head;
  for (int i = 0; i < 150; ++i) {
    auto* e = ::readdir(d);
    ASSERT_NE(e, nullptr);
    head.emplace_back(e->d_name);
  }
  long mark = ::telldir(d);
  auto tail = read_rest();
  EXPECT_EQ(head.size() + tail.size(), 502u);  // with . and ..
  ::seekdir(d, mark);
  EXPECT_EQ(read_rest(), tail);
  ::rewinddir(d);
  auto all = read_rest();
  ::closedir(d);
  std::vector<std::string> joined = head;
  joined.insert(joined.end(), tail.begin(), tail.end());
  EXPECT_EQ(all, joined);
  EXPECT_EQ(std::set<std::string>(all.begin(), all.end()).size(), 502u) << "an entry was listed twice";
}

TEST_F(PosixOps, GetattrReportsTypeModeSizeAndOwner) {
  write_file(at("f"), std::string(12345, 'a'), 0640);
  struct stat st = lstat_of(at("f"));
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  EXPECT_EQ(st.st_size, 12345);
  EXPECT_EQ(st.st_nlink, 1u);
  EXPECT_EQ(st.st_uid, ::geteuid());
  EXPECT_EQ(st.st_gid, ::getegid());
  EXPECT_GE(st.st_blocks * 512, 0);

  struct stat ds = lstat_of(dir());
  EXPECT_TRUE(S_ISDIR(ds.st_mode));
  EXPECT_EQ(ds.st_mode & 07777, 0755u);
}

// ---- create / open flags ----

TEST_F(PosixOps, CreateWithModeGivesExactlyThatMode) {
  for (mode_t m : {0600u, 0640u, 0751u, 0444u, 0000u, 0777u, 01755u}) {
    std::string p = at("m" + std::to_string(m));
    UniqueFd fd(::open(p.c_str(), O_CREAT | O_WRONLY | O_EXCL, m));
    ASSERT_TRUE(fd) << err_name(errno);
    EXPECT_EQ(lstat_of(p).st_mode & 07777, m) << "open(O_CREAT, 0" << std::oct << m << ")";
    struct stat st {};
    ASSERT_OK(::fstat(fd.get(), &st));
    EXPECT_EQ(st.st_mode & 07777, m);
  }
}

TEST_F(PosixOps, TheUmaskIsApplied) {
  ::umask(027);
  write_file(at("f"), "x", 0666);
  ASSERT_OK(::mkdir(at("d").c_str(), 0777));
  ASSERT_OK(::mkfifo(at("p").c_str(), 0666));
  ::umask(0);
  EXPECT_EQ(lstat_of(at("f")).st_mode & 07777, 0640u);
  EXPECT_EQ(lstat_of(at("d")).st_mode & 07777, 0750u);
  EXPECT_EQ(lstat_of(at("p")).st_mode & 07777, 0640u);
}

TEST_F(PosixOps, OpenExclOnAnExistingNameGivesEEXIST) {
  write_file(at("f"), "data");
  EXPECT_ERRNO(::open(at("f").c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644), EEXIST);
  ASSERT_OK(::mkdir(at("d").c_str(), 0755));
  EXPECT_ERRNO(::open(at("d").c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644), EEXIST);
  ASSERT_OK(::symlink("nowhere", at("dangling").c_str()));
  // O_EXCL never follows a symlink, even a dangling one.
  EXPECT_ERRNO(::open(at("dangling").c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644), EEXIST);
  EXPECT_EQ(read_file(at("f")), "data");
}

TEST_F(PosixOps, OpenCreatWithoutExclOpensTheExistingFileUnchanged) {
  write_file(at("f"), "keep me", 0600);
  UniqueFd fd(::open(at("f").c_str(), O_CREAT | O_RDWR, 0777));
  ASSERT_TRUE(fd);
  EXPECT_EQ(read_fd_at(fd.get(), 0, 100), "keep me");
  EXPECT_EQ(lstat_of(at("f")).st_mode & 07777, 0600u) << "O_CREAT on an existing file must not change its mode";
}

TEST_F(PosixOps, OpenTruncEmptiesTheFile) {
  std::string content = marker_content(10000, 1);
  write_file(at("f"), content);
  {
    UniqueFd fd(::open(at("f").c_str(), O_WRONLY | O_TRUNC));
    ASSERT_TRUE(fd);
    struct stat st {};
    ASSERT_OK(::fstat(fd.get(), &st));
    EXPECT_EQ(st.st_size, 0);
  }
  EXPECT_EQ(read_file(at("f")), "");
  // Growing again after O_TRUNC must expose zeros, not the old contents.
  {
    UniqueFd fd(::open(at("f").c_str(), O_WRONLY));
    ASSERT_OK(::ftruncate(fd.get(), 10000));
  }
  EXPECT_EQ(read_file(at("f")), std::string(10000, '\0'));
}

TEST_F(PosixOps, OpenAppendAlwaysWritesAtTheEnd) {
  write_file(at("f"), "head-");
  UniqueFd fd(::open(at("f").c_str(), O_WRONLY | O_APPEND));
  ASSERT_TRUE(fd);
  ASSERT_EQ(::write(fd.get(), "one-", 4), 4);
  ASSERT_EQ(::lseek(fd.get(), 0, SEEK_SET), 0);
  ASSERT_EQ(::write(fd.get(), "two", 3), 3);
  // Another writer extends the file in between: the next append must land after its data.
  {
    UniqueFd other(::open(at("f").c_str(), O_WRONLY));
    write_fd_at(other.get(), 12, std::string(5000, 'z'));
  }
  ASSERT_EQ(::write(fd.get(), "-tail", 5), 5);
  EXPECT_EQ(read_file(at("f")), "head-one-two" + std::string(5000, 'z') + "-tail");
  std::string big = marker_content(70000, 2);
  ASSERT_EQ(::write(fd.get(), big.data(), big.size()), static_cast<ssize_t>(big.size()));
  EXPECT_EQ(read_file(at("f")), "head-one-two" + std::string(5000, 'z') + "-tail" + big);
}

TEST_F(PosixOps, OpenReadOnlyRefusesWritesWithEBADF) {
  write_file(at("f"), "abc");
  UniqueFd fd(::open(at("f").c_str(), O_RDONLY));
  ASSERT_TRUE(fd);
  EXPECT_ERRNO(::write(fd.get(), "x", 1), EBADF);
  EXPECT_ERRNO(::ftruncate(fd.get(), 0), EINVAL);
}

TEST_F(PosixOps, WriteOnlyDescriptorsCanWritePartialBlocks) {
  // The daemon must read the rest of a block to re-encrypt it, even when the caller opened the file O_WRONLY.
  std::string c = marker_content(10000, 22);
  write_file(at("f"), c, 0200);
  UniqueFd fd(::open(at("f").c_str(), O_WRONLY));
  ASSERT_TRUE(fd) << err_name(errno);
  write_fd_at(fd.get(), 100, "0123456789");
  write_fd_at(fd.get(), 4090, "across-the-boundary");
  write_fd_at(fd.get(), 9995, "past-the-end");
  fd.reset();
  c.replace(100, 10, "0123456789");
  c.replace(4090, 19, "across-the-boundary");
  c.resize(9995);
  c += "past-the-end";
  EXPECT_EQ(first_difference(read_file(at("f")), c), "");
  suite().ledger().keep(rel("f"), c);
}

TEST_F(PosixOps, ExplicitTimesSetWhileOpenAreNotOverwrittenByLaterFlushes) {
  // With a writeback cache, dirty data flushed at close must not stamp a newer mtime over the one set by
  // futimens (cp -p, tar and rsync write, then set times, sometimes before closing).
  UniqueFd fd(::open(at("f").c_str(), O_CREAT | O_RDWR, 0644));
  ASSERT_TRUE(fd);
  write_fd_at(fd.get(), 0, marker_content(100000, 23));
  struct timespec ts[2] = {{1000000000, 5}, {1000000000, 6}};
  ASSERT_OK(::futimens(fd.get(), ts));
  fd.reset();
  EXPECT_EQ(lstat_of(at("f")).st_mtim.tv_sec, 1000000000);
  EXPECT_EQ(lstat_of(at("f")).st_mtim.tv_nsec, 6);
  EXPECT_NO_ERROR(suite().remount());
  ASSERT_TRUE(suite().mounted()) << "no mount after remount";
  EXPECT_EQ(lstat_of(at("f")).st_mtim.tv_sec, 1000000000) << "after remount";
  EXPECT_EQ(lstat_of(at("f")).st_mtim.tv_nsec, 6);
  EXPECT_EQ(lstat_of(at("f")).st_size, 100000);
}

TEST_F(PosixOps, SymlinkLoopsGiveELOOP) {
  ASSERT_OK(::symlink("b", at("a").c_str()));
  ASSERT_OK(::symlink("a", at("b").c_str()));
  EXPECT_ERRNO(::open(at("a").c_str(), O_RDONLY), ELOOP);
  struct stat st {};
  EXPECT_ERRNO(::stat(at("a").c_str(), &st), ELOOP);
  EXPECT_OK(::lstat(at("a").c_str(), &st));
}

// ---- read / write / fsync ----

TEST_F(PosixOps, ReadAndWriteAtEveryAlignmentRoundTrip) {
  std::string model;
  UniqueFd fd(::open(at("f").c_str(), O_CREAT | O_RDWR, 0644));
  ASSERT_TRUE(fd);
  struct Piece {
    uint64_t off;
    size_t len;
  };
  const Piece pieces[] = {{0, 1},     {1, 4094},  {4095, 2}, {4096, 4096},     {8191, 1},         {10000, 9000},
                          {4090, 20}, {65536, 1}, {0, 3},    {131072 - 5, 10}, {200000, 1 << 20}, {12, 100000}};
  uint64_t seed = 10;
  for (auto p : pieces) {
    std::string data = random_bytes(p.len, ++seed);
    write_fd_at(fd.get(), p.off, data);
    if (model.size() < p.off + p.len) model.resize(p.off + p.len, '\0');
    model.replace(p.off, p.len, data);
    struct stat st {};
    ASSERT_OK(::fstat(fd.get(), &st));
    ASSERT_EQ(static_cast<uint64_t>(st.st_size), model.size()) << "st_size after writing at " << p.off;
  }
  EXPECT_EQ(first_difference(read_fd_at(fd.get(), 0, model.size() + 100), model), "");
  for (auto p : pieces) {
    std::string got = read_fd_at(fd.get(), p.off, p.len);
    EXPECT_EQ(first_difference(got, model.substr(p.off, p.len)), "") << "read at " << p.off;
  }
  EXPECT_EQ(read_fd_at(fd.get(), model.size(), 10), "") << "read at EOF returns nothing";
  EXPECT_EQ(read_fd_at(fd.get(), model.size() + 5000, 10), "") << "read past EOF returns nothing";
  suite().ledger().keep(rel("f"), model);
}

TEST_F(PosixOps, WriteBeyondEndLeavesAHoleOfZeros) {
  UniqueFd fd(::open(at("sparse").c_str(), O_CREAT | O_RDWR, 0644));
  ASSERT_TRUE(fd);
  std::string tail = marker_content(100, 3);
  write_fd_at(fd.get(), 3 * 1024 * 1024 + 7, tail);
  struct stat st {};
  ASSERT_OK(::fstat(fd.get(), &st));
  EXPECT_EQ(st.st_size, 3 * 1024 * 1024 + 107);
  std::string want = std::string(3 * 1024 * 1024 + 7, '\0') + tail;
  EXPECT_EQ(first_difference(read_file(at("sparse")), want), "");
  suite().ledger().keep(rel("sparse"), want);
}

TEST_F(PosixOps, SequentialWritesThroughTheFileOffset) {
  UniqueFd fd(::open(at("f").c_str(), O_CREAT | O_RDWR | O_TRUNC, 0644));
  ASSERT_TRUE(fd);
  std::string model;
  for (int i = 0; i < 50; ++i) {
    std::string chunk = marker_content(1000 + 37 * i, 100 + i);
    ASSERT_EQ(::write(fd.get(), chunk.data(), chunk.size()), static_cast<ssize_t>(chunk.size()));
    model += chunk;
  }
  ASSERT_EQ(::lseek(fd.get(), 0, SEEK_SET), 0);
  std::string back(model.size(), '\0');
  ASSERT_EQ(::read(fd.get(), back.data(), back.size()), static_cast<ssize_t>(back.size()));
  EXPECT_EQ(first_difference(back, model), "");
  suite().ledger().keep(rel("f"), model);
}

TEST_F(PosixOps, FsyncFdatasyncAndDirectoryFsyncSucceed) {
  UniqueFd fd(::open(at("f").c_str(), O_CREAT | O_RDWR, 0644));
  ASSERT_TRUE(fd);
  std::string data = marker_content(9000, 4);
  write_fd_at(fd.get(), 0, data);
  EXPECT_OK(::fsync(fd.get()));
  EXPECT_OK(::fdatasync(fd.get()));
  UniqueFd dfd(::open(dir().c_str(), O_RDONLY | O_DIRECTORY));
  ASSERT_TRUE(dfd);
  EXPECT_OK(::fsync(dfd.get()));
  EXPECT_OK(::syncfs(fd.get()));
  suite().ledger().keep(rel("f"), data);
}

TEST_F(PosixOps, SyncfsAfterUnlinkingAFreshFileSucceeds) {
  // The kernel may still write back the times of a file it has just seen unlinked; that must not turn into an
  // error that syncfs(2) then reports for the whole filesystem.
  write_file(at("gone"), "");
  ASSERT_OK(::unlink(at("gone").c_str()));
  write_file(at("kept"), "x");
  UniqueFd fd(::open(at("kept").c_str(), O_RDONLY));
  ASSERT_TRUE(fd);
  EXPECT_OK(::syncfs(fd.get()));
  EXPECT_OK(::syncfs(fd.get()));
}

// ---- truncate / ftruncate ----

TEST_F(PosixOps, TruncateGrowsAndShrinksAcrossBlockBoundaries) {
  const uint64_t kMiB = 1 << 20;
  std::string model = random_bytes(5 * kMiB + 333, 5);
  write_file(at("f"), model);
  const uint64_t sizes[] = {
      4097,         4096,         4095,   1,        0,  1,        4095, 4096,         4097, 3 * kMiB + 5,
      3 * kMiB - 1, 8193,         8192,   5 * kMiB, 12, 2 * kMiB, 0,    4096 * 3 + 1, 4096, 4096 * 2,
      4095,         6 * kMiB + 1, 100000, 0};
  bool use_fd = false;
  UniqueFd fd(::open(at("f").c_str(), O_RDWR));
  ASSERT_TRUE(fd);
  for (uint64_t s : sizes) {
    use_fd = !use_fd;  // alternate truncate(2) on the path and ftruncate(2) on an open descriptor
    if (use_fd)
      ASSERT_OK(::ftruncate(fd.get(), static_cast<off_t>(s)));
    else
      ASSERT_OK(::truncate(at("f").c_str(), static_cast<off_t>(s)));
    model.resize(s, '\0');
    ASSERT_EQ(static_cast<uint64_t>(lstat_of(at("f")).st_size), s);
    std::string got = read_fd_at(fd.get(), 0, s + 4096);
    ASSERT_EQ(first_difference(got, model), "") << (use_fd ? "ftruncate" : "truncate") << " to " << s;
    // After each resize, write a little near the new end so that the next grow must zero what was past it.
    if (s > 0) {
      std::string mark = random_bytes(std::min<uint64_t>(s, 300), s);
      uint64_t off = s - mark.size();
      write_fd_at(fd.get(), off, mark);
      model.replace(off, mark.size(), mark);
    }
  }
  suite().ledger().keep(rel("f"), model);
}

TEST_F(PosixOps, ShrinkThenGrowNeverResurrectsOldBytes) {
  std::string secret = std::string(kContentMarker) + std::string(20000, 's');
  write_file(at("f"), secret);
  for (off_t s : {4097, 4096, 4095, 1, 0}) {
    ASSERT_OK(::truncate(at("f").c_str(), s));
    ASSERT_OK(::truncate(at("f").c_str(), 20000));
    std::string want = secret.substr(0, static_cast<size_t>(s)) + std::string(20000 - static_cast<size_t>(s), '\0');
    ASSERT_EQ(first_difference(read_file(at("f")), want), "") << "shrink to " << s << " then grow";
    write_file(at("f"), secret);
  }
}

TEST_F(PosixOps, TruncateErrors) {
  ASSERT_OK(::mkdir(at("d").c_str(), 0755));
  EXPECT_ERRNO(::truncate(at("d").c_str(), 0), EISDIR);
  EXPECT_ERRNO(::truncate(at("missing").c_str(), 0), ENOENT);
  write_file(at("f"), "x");
  EXPECT_ERRNO(::truncate(at("f").c_str(), -1), EINVAL);
}

TEST_F(PosixOps, OffsetsBeyondFourGiBWork) {
  // 64-bit offsets all the way through: block index arithmetic must not wrap at 2^32 bytes or blocks.
  UniqueFd fd(::open(at("huge").c_str(), O_CREAT | O_RDWR, 0644));
  ASSERT_TRUE(fd);
  const uint64_t far = (uint64_t{5} << 30) + 4093;
  std::string mark = marker_content(9000, 20);
  write_fd_at(fd.get(), far, mark);
  struct stat st {};
  ASSERT_OK(::fstat(fd.get(), &st));
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), far + mark.size());
  EXPECT_EQ(read_fd_at(fd.get(), far, mark.size()), mark);
  EXPECT_EQ(read_fd_at(fd.get(), far - 5000, 5000), std::string(5000, '\0'));
  EXPECT_EQ(read_fd_at(fd.get(), uint64_t{1} << 32, 4096), std::string(4096, '\0'));
  ASSERT_OK(::ftruncate(fd.get(), static_cast<off_t>(far + 100)));
  EXPECT_EQ(read_fd_at(fd.get(), far, 200), mark.substr(0, 100));
  // A sparse grow to 100 GiB must not write 100 GiB of anything.
  const uint64_t huge = uint64_t{100} << 30;
  ASSERT_OK(::ftruncate(fd.get(), static_cast<off_t>(huge)));
  ASSERT_OK(::fstat(fd.get(), &st));
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), huge);
  EXPECT_EQ(read_fd_at(fd.get(), huge - 10, 100), std::string(10, '\0'));
  EXPECT_EQ(read_fd_at(fd.get(), far, 100), mark.substr(0, 100));
  ASSERT_OK(::ftruncate(fd.get(), 0));
}

TEST_F(PosixOps, LargeRequestsRoundTrip) {
  // Big writes and reads are split and encrypted in parallel by the daemon: every piece must land in place.
  const size_t kSize = 24u << 20;
  std::string data = random_bytes(kSize, 26);
  UniqueFd fd(::open(at("big").c_str(), O_CREAT | O_RDWR, 0644));
  ASSERT_TRUE(fd);
  for (size_t off = 0; off < kSize; off += 4u << 20) write_fd_at(fd.get(), off, data.substr(off, 4u << 20));
  std::string odd = random_bytes(3 * 1048576 + 12345, 27);
  write_fd_at(fd.get(), 5 * 1048576 + 77, odd);
  data.replace(5 * 1048576 + 77, odd.size(), odd);
  ASSERT_OK(::fsync(fd.get()));
  fd.reset();
  EXPECT_EQ(first_difference(read_file(at("big")), data), "");
  UniqueFd rd(::open(at("big").c_str(), O_RDONLY));
  for (uint64_t off : {uint64_t{0}, uint64_t{4095}, uint64_t{1048575}, uint64_t{7} << 20, uint64_t{kSize - 3000000}})
    EXPECT_EQ(first_difference(read_fd_at(rd.get(), off, 3000000), data.substr(off, 3000000)), "") << "at " << off;
  suite().ledger().keep(rel("big"), data);
}

TEST_F(PosixOps, CopyFileRangeWithinTheMountCopiesPlaintext) {
  // The kernel may hand copy_file_range to the daemon: copying ciphertext between files would be a disaster.
  std::string src = marker_content(3 * 4096 + 500, 28);
  write_file(at("src"), src);
  write_file(at("dst"), std::string(100, 'd'));
  UniqueFd in(::open(at("src").c_str(), O_RDONLY)), out(::open(at("dst").c_str(), O_WRONLY));
  ASSERT_TRUE(in && out);
  loff_t ioff = 1000, ooff = 50;
  size_t left = 9000;
  while (left > 0) {
    ssize_t n = ::copy_file_range(in.get(), &ioff, out.get(), &ooff, left, 0);
    ASSERT_GT(n, 0) << err_name(errno);
    left -= static_cast<size_t>(n);
  }
  in.reset();
  out.reset();
  std::string want = std::string(50, 'd') + src.substr(1000, 9000);
  EXPECT_EQ(first_difference(read_file(at("dst")), want), "");
  // And cp, which tries reflinks and copy_file_range before read/write.
  auto r = run({"cp", "--reflink=auto", at("src"), at("cp")});
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(first_difference(read_file(at("cp")), src), "");
  suite().ledger().keep(rel("dst"), want);
  suite().ledger().keep(rel("cp"), src);
}

TEST_F(PosixOps, StBlocksReflectAllocation) {
  // du, tar --sparse and cp --sparse go by st_blocks.
  write_file(at("dense"), random_bytes(1 << 20, 29));
  UniqueFd fd(::open(at("sparse").c_str(), O_CREAT | O_WRONLY, 0644));
  ASSERT_OK(::ftruncate(fd.get(), 1 << 30));
  fd.reset();
  EXPECT_GE(lstat_of(at("dense")).st_blocks * 512, 1 << 20);
  EXPECT_LT(lstat_of(at("sparse")).st_blocks * 512, 1 << 20) << "a sparse file must not claim its holes";
}

TEST_F(PosixOps, DirectoryTimesAndCtimeChangeWithTheirEntries) {
  ASSERT_OK(::mkdir(at("d").c_str(), 0755));
  struct timespec old[2] = {{1000, 0}, {1000, 0}};
  ASSERT_OK(::utimensat(AT_FDCWD, at("d").c_str(), old, 0));
  write_file(at("d/f"), "x");
  EXPECT_GT(lstat_of(at("d")).st_mtim.tv_sec, 1000) << "creating an entry updates the directory's mtime";
  ASSERT_OK(::utimensat(AT_FDCWD, at("d").c_str(), old, 0));
  ASSERT_OK(::unlink(at("d/f").c_str()));
  EXPECT_GT(lstat_of(at("d")).st_mtim.tv_sec, 1000) << "removing an entry updates the directory's mtime";
  write_file(at("g"), "y");
  ASSERT_OK(::utimensat(AT_FDCWD, at("g").c_str(), old, 0));
  time_t before = lstat_of(at("g")).st_ctim.tv_sec;
  ASSERT_OK(::chmod(at("g").c_str(), 0600));
  EXPECT_GE(lstat_of(at("g")).st_ctim.tv_sec, before);
  EXPECT_EQ(lstat_of(at("g")).st_mtim.tv_sec, 1000) << "chmod must not touch mtime";
}

// ---- fallocate ----

TEST_F(PosixOps, FallocateModeZeroExtendsWithZerosAndKeepsData) {
  std::string head = marker_content(5000, 6);
  write_file(at("f"), head);
  UniqueFd fd(::open(at("f").c_str(), O_RDWR));
  ASSERT_TRUE(fd);
  ASSERT_OK(::fallocate(fd.get(), 0, 3000, 3 * 4096 + 10));
  struct stat st {};
  ASSERT_OK(::fstat(fd.get(), &st));
  EXPECT_EQ(st.st_size, 3000 + 3 * 4096 + 10);
  std::string want = head + std::string(static_cast<size_t>(st.st_size) - head.size(), '\0');
  EXPECT_EQ(first_difference(read_file(at("f")), want), "");
  // Inside the file: nothing changes.
  ASSERT_OK(::fallocate(fd.get(), 0, 0, 100));
  EXPECT_EQ(first_difference(read_file(at("f")), want), "");
  // Writing into the allocated range afterwards works like anywhere else.
  write_fd_at(fd.get(), 9000, "written-after-fallocate");
  want.replace(9000, 23, "written-after-fallocate");
  EXPECT_EQ(first_difference(read_file(at("f")), want), "");
  suite().ledger().keep(rel("f"), want);
}

TEST_F(PosixOps, FallocateKeepSizeDoesNotChangeTheSize) {
  std::string head = marker_content(4097, 7);
  write_file(at("f"), head);
  UniqueFd fd(::open(at("f").c_str(), O_RDWR));
  ASSERT_TRUE(fd);
  ASSERT_OK(::fallocate(fd.get(), FALLOC_FL_KEEP_SIZE, 0, 1 << 20));
  struct stat st {};
  ASSERT_OK(::fstat(fd.get(), &st));
  EXPECT_EQ(st.st_size, 4097);
  EXPECT_EQ(first_difference(read_file(at("f")), head), "");
  // Growing into the preallocated range later must read zeros.
  ASSERT_OK(::ftruncate(fd.get(), 20000));
  std::string want = head + std::string(20000 - 4097, '\0');
  EXPECT_EQ(first_difference(read_file(at("f")), want), "");
  suite().ledger().keep(rel("f"), want);
}

TEST_F(PosixOps, FallocatePunchHoleZeroesAndKeepsTheSize) {
  std::string data = marker_content(5 * 4096, 8);
  write_file(at("f"), data);
  UniqueFd fd(::open(at("f").c_str(), O_RDWR));
  ASSERT_TRUE(fd);
  ASSERT_OK(::fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 4000, 9000));
  std::string want = data;
  want.replace(4000, 9000, std::string(9000, '\0'));
  EXPECT_EQ(first_difference(read_file(at("f")), want), "") << "punched range must read as zeros";
  // Without KEEP_SIZE the kernel refuses a punch, as on any file system.
  EXPECT_ERRNO(::fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE, 0, 10), EOPNOTSUPP);
  suite().ledger().keep(rel("f"), want);
}

// ---- unlink / rmdir / mkdir ----

TEST_F(PosixOps, UnlinkRemovesTheName) {
  write_file(at("f"), "x");
  ASSERT_OK(::unlink(at("f").c_str()));
  struct stat st {};
  EXPECT_ERRNO(::lstat(at("f").c_str(), &st), ENOENT);
  EXPECT_ERRNO(::unlink(at("f").c_str()), ENOENT);
  EXPECT_TRUE(list_dir(dir()).empty());
}

TEST_F(PosixOps, RmdirOfANonEmptyDirectoryGivesENOTEMPTY) {
  ASSERT_OK(::mkdir(at("d").c_str(), 0755));
  write_file(at("d/f"), "x");
  EXPECT_ERRNO(::rmdir(at("d").c_str()), ENOTEMPTY);
  ASSERT_OK(::unlink(at("d/f").c_str()));
  ASSERT_OK(::mkdir(at("d/sub").c_str(), 0755));
  EXPECT_ERRNO(::rmdir(at("d").c_str()), ENOTEMPTY);
  ASSERT_OK(::rmdir(at("d/sub").c_str()));
  EXPECT_OK(::rmdir(at("d").c_str()));
  struct stat st {};
  EXPECT_ERRNO(::lstat(at("d").c_str(), &st), ENOENT);
  EXPECT_ERRNO(::rmdir(at("d").c_str()), ENOENT);
}

TEST_F(PosixOps, MkdirModeIsExact) {
  for (mode_t m : {0151u, 0700u, 0755u, 0000u, 0777u, 01777u, 0311u}) {
    std::string p = at("d" + std::to_string(m));
    ASSERT_OK(::mkdir(p.c_str(), m));
    EXPECT_EQ(lstat_of(p).st_mode & 07777, m) << "mkdir 0" << std::oct << m << " gave 0" << lstat_of(p).st_mode;
    EXPECT_TRUE(S_ISDIR(lstat_of(p).st_mode));
  }
}

TEST_F(PosixOps, MkdirOverAnExistingNameGivesEEXIST) {
  ASSERT_OK(::mkdir(at("d").c_str(), 0755));
  EXPECT_ERRNO(::mkdir(at("d").c_str(), 0755), EEXIST);
  write_file(at("f"), "x");
  EXPECT_ERRNO(::mkdir(at("f").c_str(), 0755), EEXIST);
  ASSERT_OK(::symlink("d", at("l").c_str()));
  EXPECT_ERRNO(::mkdir(at("l").c_str(), 0755), EEXIST);
}

TEST_F(PosixOps, DirectoryLinkCountFollowsSubdirectories) {
  ASSERT_OK(::mkdir(at("d").c_str(), 0755));
  EXPECT_EQ(lstat_of(at("d")).st_nlink, 2u);
  ASSERT_OK(::mkdir(at("d/a").c_str(), 0755));
  ASSERT_OK(::mkdir(at("d/b").c_str(), 0755));
  write_file(at("d/f"), "");
  EXPECT_EQ(lstat_of(at("d")).st_nlink, 4u) << "a directory's st_nlink is 2 + its subdirectories";
  ASSERT_OK(::rmdir(at("d/a").c_str()));
  EXPECT_EQ(lstat_of(at("d")).st_nlink, 3u);
}

// ---- rename ----

TEST_F(PosixOps, RenameOverAnExistingFileReplacesIt) {
  std::string a = marker_content(7000, 9), b = marker_content(100, 10);
  write_file(at("a"), a);
  write_file(at("b"), b);
  ino_t ino = lstat_of(at("a")).st_ino;
  ASSERT_OK(::rename(at("a").c_str(), at("b").c_str()));
  struct stat st {};
  EXPECT_ERRNO(::lstat(at("a").c_str(), &st), ENOENT);
  EXPECT_EQ(read_file(at("b")), a);
  EXPECT_EQ(lstat_of(at("b")).st_ino, ino) << "a renamed file keeps its inode number";
  EXPECT_EQ(list_dir(dir()), std::vector<std::string>{"b"});
  // Renaming onto itself is a no-op.
  ASSERT_OK(::rename(at("b").c_str(), at("b").c_str()));
  EXPECT_EQ(read_file(at("b")), a);
  suite().ledger().keep(rel("b"), a);
}

// xfstests generic/035: what a rename replaced, or an rmdir removed, stays reachable through a descriptor opened
// before, and fstat shows it with no links left (a local disk's answer), never ENOENT.
TEST_F(PosixOps, FstatOfAnOpenFileOrDirectoryThatARenameReplacedShowsNoLinks) {
  write_file(at("file1"), "new");
  write_file(at("file2"), "replaced");
  {
    UniqueFd fd(::open(at("file2").c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(fd) << err_name(errno);
    ASSERT_OK(::rename(at("file1").c_str(), at("file2").c_str()));
    struct stat st {};
    ASSERT_OK(::fstat(fd.get(), &st));
    EXPECT_EQ(st.st_nlink, 0u);
    EXPECT_EQ(read_fd_at(fd.get(), 0, 100), "replaced");
  }
  ASSERT_OK(::mkdir(at("dir1").c_str(), 0755));
  ASSERT_OK(::mkdir(at("dir2").c_str(), 0755));
  {
    UniqueFd fd(::open(at("dir2").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(fd) << err_name(errno);
    ASSERT_OK(::rename(at("dir1").c_str(), at("dir2").c_str()));
    struct stat st {};
    ASSERT_OK(::fstat(fd.get(), &st));
    EXPECT_EQ(st.st_nlink, 0u);
    EXPECT_TRUE(S_ISDIR(st.st_mode));
    EXPECT_ERRNO(::openat(fd.get(), "x", O_CREAT | O_WRONLY | O_CLOEXEC, 0644), ENOENT);
  }
  ASSERT_OK(::mkdir(at("dir3").c_str(), 0755));
  {
    UniqueFd fd(::open(at("dir3").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(fd) << err_name(errno);
    ASSERT_OK(::rmdir(at("dir3").c_str()));
    struct stat st {};
    ASSERT_OK(::fstat(fd.get(), &st));
    EXPECT_EQ(st.st_nlink, 0u);
  }
  EXPECT_EQ(list_dir(dir()), (std::vector<std::string>{"dir2", "file2"}));
  suite().ledger().keep(rel("file2"), "new");
}

TEST_F(PosixOps, RenameBetweenTwoLinksOfTheSameFileDoesNothing) {
  // POSIX: if old and new are links to the same file, rename does nothing and both names stay.
  write_file(at("a"), "same");
  ASSERT_OK(::link(at("a").c_str(), at("b").c_str()));
  ASSERT_OK(::rename(at("a").c_str(), at("b").c_str()));
  EXPECT_EQ(list_dir(dir()), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(lstat_of(at("a")).st_nlink, 2u);
  EXPECT_EQ(read_file(at("a")), "same");
  EXPECT_EQ(read_file(at("b")), "same");
}

TEST_F(PosixOps, TheRootListsNoInternalFiles) {
  for (const auto& n : list_dir(mnt())) EXPECT_EQ(n.rfind(kNameMarker, 0), 0u) << "unexpected entry in the root: " << n;
  struct stat st {};
  EXPECT_ERRNO(::lstat((mnt() + "/veilfs.conf").c_str(), &st), ENOENT);
  EXPECT_ERRNO(::lstat((mnt() + "/veilfs.diriv").c_str(), &st), ENOENT);
  EXPECT_ERRNO(::lstat(at("veilfs.diriv").c_str(), &st), ENOENT);
}

TEST_F(PosixOps, RenameAcrossDirectories) {
  ASSERT_OK(::mkdir(at("x").c_str(), 0755));
  ASSERT_OK(::mkdir(at("y").c_str(), 0755));
  std::string c = marker_content(12345, 11);
  write_file(at("x/f"), c);
  ASSERT_OK(::rename(at("x/f").c_str(), at("y/g").c_str()));
  EXPECT_EQ(read_file(at("y/g")), c);
  EXPECT_TRUE(list_dir(at("x")).empty());
  // And over an existing file in another directory.
  write_file(at("x/h"), "replacement");
  ASSERT_OK(::rename(at("x/h").c_str(), at("y/g").c_str()));
  EXPECT_EQ(read_file(at("y/g")), "replacement");
  suite().ledger().keep(rel("y/g"), "replacement");
}

TEST_F(PosixOps, RenameOfADirectoryMovesItsWholeSubtree) {
  ASSERT_OK(::mkdir(at("src").c_str(), 0755));
  ASSERT_OK(::mkdir(at("src/inner").c_str(), 0700));
  std::string c = marker_content(5000, 12);
  write_file(at("src/inner/file"), c);
  ASSERT_OK(::symlink("inner/file", at("src/link").c_str()));
  ASSERT_OK(::mkdir(at("dst").c_str(), 0755));
  ASSERT_OK(::rename(at("src").c_str(), at("dst/moved").c_str()));
  EXPECT_EQ(read_file(at("dst/moved/inner/file")), c);
  EXPECT_EQ(read_file(at("dst/moved/link")), c) << "a relative symlink inside the moved tree still resolves";
  EXPECT_EQ(lstat_of(at("dst/moved/inner")).st_mode & 07777, 0700u);
  EXPECT_EQ((list_dir(at("dst/moved"))), (std::vector<std::string>{"inner", "link"}));
  // Directories created after the move inside the moved tree work too (their IVs must be right).
  ASSERT_OK(::mkdir(at("dst/moved/inner/new").c_str(), 0755));
  write_file(at("dst/moved/inner/new/f"), c);
  EXPECT_EQ(read_file(at("dst/moved/inner/new/f")), c);
  suite().ledger().keep(rel("dst/moved/inner/file"), c);
  suite().ledger().keep(rel("dst/moved/inner/new/f"), c);
}

TEST_F(PosixOps, RenameErrorsMatchALocalFilesystem) {
  ASSERT_OK(::mkdir(at("d").c_str(), 0755));
  ASSERT_OK(::mkdir(at("full").c_str(), 0755));
  write_file(at("full/f"), "x");
  ASSERT_OK(::mkdir(at("empty").c_str(), 0755));
  write_file(at("f"), "y");
  EXPECT_ERRNO(::rename(at("d").c_str(), at("full").c_str()), ENOTEMPTY);
  EXPECT_ERRNO(::rename(at("d").c_str(), at("f").c_str()), ENOTDIR);
  EXPECT_ERRNO(::rename(at("f").c_str(), at("d").c_str()), EISDIR);
  EXPECT_ERRNO(::rename(at("d").c_str(), at("d/sub").c_str()), EINVAL);
  // A directory over an empty directory replaces it.
  ASSERT_OK(::rename(at("d").c_str(), at("empty").c_str()));
  EXPECT_TRUE(S_ISDIR(lstat_of(at("empty")).st_mode));
  struct stat st {};
  EXPECT_ERRNO(::lstat(at("d").c_str(), &st), ENOENT);
}

TEST_F(PosixOps, RenameNoreplaceOnAnExistingNameGivesEEXIST) {
  write_file(at("a"), "aaa");
  write_file(at("b"), "bbb");
  EXPECT_ERRNO(renameat2_(at("a"), at("b"), RENAME_NOREPLACE), EEXIST);
  EXPECT_EQ(read_file(at("a")), "aaa");
  EXPECT_EQ(read_file(at("b")), "bbb");
  ASSERT_OK(renameat2_(at("a"), at("c"), RENAME_NOREPLACE));
  EXPECT_EQ(read_file(at("c")), "aaa");
  struct stat st {};
  EXPECT_ERRNO(::lstat(at("a").c_str(), &st), ENOENT);
}

TEST_F(PosixOps, RenameExchangeSwapsTwoEntries) {
  std::string a = marker_content(3000, 13), b = marker_content(9000, 14);
  write_file(at("a"), a);
  write_file(at("b"), b);
  ino_t ia = lstat_of(at("a")).st_ino, ib = lstat_of(at("b")).st_ino;
  ASSERT_OK(renameat2_(at("a"), at("b"), RENAME_EXCHANGE));
  EXPECT_EQ(read_file(at("a")), b);
  EXPECT_EQ(read_file(at("b")), a);
  EXPECT_EQ(lstat_of(at("a")).st_ino, ib);
  EXPECT_EQ(lstat_of(at("b")).st_ino, ia);
  // A file with a directory, across directories.
  ASSERT_OK(::mkdir(at("d").c_str(), 0755));
  ASSERT_OK(::mkdir(at("d/inner").c_str(), 0755));
  write_file(at("d/inner/x"), a);
  ASSERT_OK(renameat2_(at("d/inner"), at("a"), RENAME_EXCHANGE));
  EXPECT_TRUE(S_ISDIR(lstat_of(at("a")).st_mode));
  EXPECT_EQ(read_file(at("a/x")), a);
  EXPECT_EQ(read_file(at("d/inner")), b);
  EXPECT_ERRNO(renameat2_(at("a"), at("missing"), RENAME_EXCHANGE), ENOENT);
  suite().ledger().keep(rel("a/x"), a);
  suite().ledger().keep(rel("d/inner"), b);
  suite().ledger().keep(rel("b"), a);
}

// ---- link ----

TEST_F(PosixOps, HardLinksShareContentsAndCountLinks) {
  std::string c = marker_content(6000, 15);
  write_file(at("a"), c);
  ASSERT_OK(::mkdir(at("sub").c_str(), 0755));
  ASSERT_OK(::link(at("a").c_str(), at("b").c_str()));
  ASSERT_OK(::link(at("a").c_str(), at("sub/c").c_str()));
  struct stat sa = lstat_of(at("a")), sb = lstat_of(at("b")), sc = lstat_of(at("sub/c"));
  EXPECT_EQ(sa.st_ino, sb.st_ino);
  EXPECT_EQ(sa.st_ino, sc.st_ino);
  EXPECT_EQ(sa.st_nlink, 3u);
  EXPECT_EQ(sb.st_nlink, 3u);
  EXPECT_EQ(read_file(at("b")), c);
  // A write through one name is seen through the others, including growth.
  {
    UniqueFd fd(::open(at("b").c_str(), O_WRONLY));
    write_fd_at(fd.get(), 5990, "through-b-and-beyond");
  }
  std::string want = c.substr(0, 5990) + "through-b-and-beyond";
  EXPECT_EQ(read_file(at("a")), want);
  EXPECT_EQ(read_file(at("sub/c")), want);
  EXPECT_EQ(lstat_of(at("sub/c")).st_size, static_cast<off_t>(want.size()));
  ASSERT_OK(::truncate(at("sub/c").c_str(), 10));
  EXPECT_EQ(read_file(at("a")), want.substr(0, 10));
  ASSERT_OK(::unlink(at("a").c_str()));
  EXPECT_EQ(lstat_of(at("b")).st_nlink, 2u);
  EXPECT_EQ(read_file(at("b")), want.substr(0, 10));
  EXPECT_ERRNO(::link(at("b").c_str(), at("sub/c").c_str()), EEXIST);
  EXPECT_ERRNO(::link(at("sub").c_str(), at("dirlink").c_str()), EPERM);
  EXPECT_ERRNO(::link(at("missing").c_str(), at("x").c_str()), ENOENT);
  suite().ledger().keep(rel("b"), want.substr(0, 10));
  suite().ledger().keep(rel("sub/c"), want.substr(0, 10));
}

// ---- symlink / readlink ----

TEST_F(PosixOps, SymlinksStoreTheirTargetsExactly) {
  const std::string targets[] = {"a", "../relative/veilmark_target", "/absolute/path/with spaces",
                                 std::string(kNameMarker) + "/" + std::string(1000, 'x'),
                                 std::string(4095, 't')};  // PATH_MAX - 1
  int i = 0;
  for (const auto& t : targets) {
    std::string p = at("l" + std::to_string(i++));
    ASSERT_OK(::symlink(t.c_str(), p.c_str()));
    std::string buf(8192, '\0');
    ssize_t n = ::readlink(p.c_str(), buf.data(), buf.size());
    ASSERT_GE(n, 0) << err_name(errno);
    buf.resize(static_cast<size_t>(n));
    EXPECT_EQ(buf.size(), t.size());
    EXPECT_TRUE(buf == t) << "readlink returned a different target of length " << t.size();
    struct stat st = lstat_of(p);
    EXPECT_TRUE(S_ISLNK(st.st_mode));
    EXPECT_EQ(st.st_size, static_cast<off_t>(t.size())) << "a symlink's st_size is its target's length";
  }
  EXPECT_ERRNO(::symlink("x", at("l0").c_str()), EEXIST);
  write_file(at("regular"), "r");
  char b[8];
  EXPECT_ERRNO(::readlink(at("regular").c_str(), b, sizeof b), EINVAL);
}

TEST_F(PosixOps, SymlinkIsFollowedOnOpen) {
  std::string c = marker_content(300, 16);
  ASSERT_OK(::mkdir(at("d").c_str(), 0755));
  write_file(at("d/target"), c);
  ASSERT_OK(::symlink("d/target", at("rel").c_str()));
  ASSERT_OK(::symlink((dir() + "/d").c_str(), at("abs").c_str()));
  EXPECT_EQ(read_file(at("rel")), c);
  EXPECT_EQ(read_file(at("abs/target")), c);
  EXPECT_ERRNO(::open(at("rel").c_str(), O_RDONLY | O_NOFOLLOW), ELOOP);
}

TEST_F(PosixOps, SymlinkWithALongNameAndLongTarget) {
  std::string name = std::string(kNameMarker) + std::string(255 - 8, 'L');
  ASSERT_EQ(name.size(), 255u);
  std::string target(4095, 'T');
  target.replace(0, 8, kNameMarker);
  ASSERT_OK(::symlink(target.c_str(), at(name).c_str()));
  std::string buf(5000, '\0');
  ssize_t n = ::readlink(at(name).c_str(), buf.data(), buf.size());
  ASSERT_EQ(n, 4095) << err_name(errno);
  buf.resize(4095);
  EXPECT_TRUE(buf == target);
  EXPECT_EQ(list_dir(dir()), std::vector<std::string>{name});
}

// ---- mknod ----

TEST_F(PosixOps, MkfifoCreatesAWorkingFifo) {
  ASSERT_OK(::mkfifo(at("fifo").c_str(), 0640));
  struct stat st = lstat_of(at("fifo"));
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  // O_RDWR on a FIFO never blocks on Linux: write then read back through the pipe.
  UniqueFd fd(::open(at("fifo").c_str(), O_RDWR | O_NONBLOCK));
  ASSERT_TRUE(fd) << err_name(errno);
  ASSERT_EQ(::write(fd.get(), "pipe!", 5), 5);
  char buf[8] = {};
  ASSERT_EQ(::read(fd.get(), buf, sizeof buf), 5);
  EXPECT_EQ(std::string(buf, 5), "pipe!");
  EXPECT_ERRNO(::mkfifo(at("fifo").c_str(), 0640), EEXIST);
}

TEST_F(PosixOps, MknodCreatesSocketsAndDeviceNodesAsRoot) {
  ASSERT_OK(::mknod(at("sock").c_str(), S_IFSOCK | 0600, 0));
  EXPECT_TRUE(S_ISSOCK(lstat_of(at("sock")).st_mode));
  ASSERT_OK(::mknod(at("fifo2").c_str(), S_IFIFO | 0644, 0));
  EXPECT_TRUE(S_ISFIFO(lstat_of(at("fifo2")).st_mode));
  if (::geteuid() != 0) GTEST_SKIP() << "device nodes need root";
  ASSERT_OK(::mknod(at("null").c_str(), S_IFCHR | 0666, makedev(1, 3)));
  ASSERT_OK(::mknod(at("blk").c_str(), S_IFBLK | 0600, makedev(7, 99)));
  struct stat c = lstat_of(at("null")), b = lstat_of(at("blk"));
  EXPECT_TRUE(S_ISCHR(c.st_mode));
  EXPECT_EQ(c.st_rdev, makedev(1, 3));
  EXPECT_EQ(c.st_mode & 07777, 0666u);
  EXPECT_TRUE(S_ISBLK(b.st_mode));
  EXPECT_EQ(b.st_rdev, makedev(7, 99));
}

// ---- chmod / chown / utimens ----

TEST_F(PosixOps, ChmodSetsExactModes) {
  write_file(at("f"), "x", 0644);
  for (mode_t m : {0600u, 0000u, 0777u, 04755u, 02710u, 01644u, 0151u}) {
    ASSERT_OK(::chmod(at("f").c_str(), m));
    EXPECT_EQ(lstat_of(at("f")).st_mode & 07777, m) << "chmod 0" << std::oct << m;
  }
  UniqueFd fd(::open(at("f").c_str(), O_RDONLY));
  ASSERT_OK(::fchmod(fd.get(), 0640));
  EXPECT_EQ(lstat_of(at("f")).st_mode & 07777, 0640u);
  ASSERT_OK(::mkdir(at("d").c_str(), 0755));
  ASSERT_OK(::chmod(at("d").c_str(), 0151));
  EXPECT_EQ(lstat_of(at("d")).st_mode & 07777, 0151u);
  EXPECT_ERRNO(::chmod(at("missing").c_str(), 0644), ENOENT);
}

TEST_F(PosixOps, ChownAsRootChangesOwnerAndGroup) {
  if (::geteuid() != 0) GTEST_SKIP() << "chown needs root";
  write_file(at("f"), "x");
  ASSERT_OK(::chown(at("f").c_str(), 1234, 5678));
  struct stat st = lstat_of(at("f"));
  EXPECT_EQ(st.st_uid, 1234u);
  EXPECT_EQ(st.st_gid, 5678u);
  ASSERT_OK(::chown(at("f").c_str(), static_cast<uid_t>(-1), 42));
  st = lstat_of(at("f"));
  EXPECT_EQ(st.st_uid, 1234u) << "uid -1 means unchanged";
  EXPECT_EQ(st.st_gid, 42u);
  ASSERT_OK(::symlink("f", at("l").c_str()));
  ASSERT_OK(::lchown(at("l").c_str(), 777, 888));
  EXPECT_EQ(lstat_of(at("l")).st_uid, 777u);
  EXPECT_EQ(lstat_of(at("l")).st_gid, 888u);
  EXPECT_EQ(lstat_of(at("f")).st_uid, 1234u) << "lchown must not follow the link";
  ASSERT_OK(::mkdir(at("d").c_str(), 0755));
  ASSERT_OK(::chown(at("d").c_str(), 4321, 8765));
  EXPECT_EQ(lstat_of(at("d")).st_uid, 4321u);
  // Changing the owner of a setuid file clears setuid, even for root (Linux since 2.2.13, as ext4 does).
  write_file(at("suid"), "x", 0644);
  ASSERT_OK(::chmod(at("suid").c_str(), 04755));
  ASSERT_OK(::chown(at("suid").c_str(), 1234, static_cast<gid_t>(-1)));
  EXPECT_EQ(lstat_of(at("suid")).st_mode & 07777, 0755u);
}

TEST_F(PosixOps, UtimensSetsExactTimesAndHonoursNowAndOmit) {
  write_file(at("f"), "x");
  struct timespec ts[2] = {{1000000000, 123456789}, {1200000000, 987654321}};
  ASSERT_OK(::utimensat(AT_FDCWD, at("f").c_str(), ts, 0));
  struct stat st = lstat_of(at("f"));
  EXPECT_EQ(st.st_atim.tv_sec, 1000000000);
  EXPECT_EQ(st.st_atim.tv_nsec, 123456789);
  EXPECT_EQ(st.st_mtim.tv_sec, 1200000000);
  EXPECT_EQ(st.st_mtim.tv_nsec, 987654321);

  // UTIME_OMIT leaves that time alone; UTIME_NOW sets it to the current time.
  struct timespec now_omit[2] = {{0, UTIME_OMIT}, {0, UTIME_NOW}};
  time_t before = ::time(nullptr);
  ASSERT_OK(::utimensat(AT_FDCWD, at("f").c_str(), now_omit, 0));
  st = lstat_of(at("f"));
  EXPECT_EQ(st.st_atim.tv_sec, 1000000000);
  EXPECT_EQ(st.st_atim.tv_nsec, 123456789);
  EXPECT_GE(st.st_mtim.tv_sec, before - 2);
  EXPECT_LE(st.st_mtim.tv_sec, ::time(nullptr) + 2);

  struct timespec omit_now[2] = {{0, UTIME_NOW}, {0, UTIME_OMIT}};
  ASSERT_OK(::utimensat(AT_FDCWD, at("f").c_str(), omit_now, 0));
  struct stat st2 = lstat_of(at("f"));
  EXPECT_GE(st2.st_atim.tv_sec, before - 2);
  EXPECT_EQ(st2.st_mtim.tv_sec, st.st_mtim.tv_sec);
  EXPECT_EQ(st2.st_mtim.tv_nsec, st.st_mtim.tv_nsec);

  // futimens on an open descriptor.
  UniqueFd fd(::open(at("f").c_str(), O_RDONLY));
  struct timespec ts3[2] = {{5, 0}, {6, 7}};
  ASSERT_OK(::futimens(fd.get(), ts3));
  st = lstat_of(at("f"));
  EXPECT_EQ(st.st_atim.tv_sec, 5);
  EXPECT_EQ(st.st_mtim.tv_sec, 6);
  EXPECT_EQ(st.st_mtim.tv_nsec, 7);
}

TEST_F(PosixOps, UtimensOnASymlinkWithNoFollowChangesOnlyTheLink) {
  write_file(at("f"), "x");
  struct timespec tf[2] = {{1500000000, 0}, {1500000000, 0}};
  ASSERT_OK(::utimensat(AT_FDCWD, at("f").c_str(), tf, 0));
  ASSERT_OK(::symlink("f", at("l").c_str()));
  struct timespec tl[2] = {{1100000000, 11}, {1100000000, 22}};
  ASSERT_OK(::utimensat(AT_FDCWD, at("l").c_str(), tl, AT_SYMLINK_NOFOLLOW));
  struct stat sl = lstat_of(at("l")), sf = lstat_of(at("f"));
  EXPECT_EQ(sl.st_mtim.tv_sec, 1100000000);
  EXPECT_EQ(sl.st_mtim.tv_nsec, 22);
  EXPECT_EQ(sf.st_mtim.tv_sec, 1500000000) << "the target must be untouched";
  // Stat-ing a symlink must not change its atime (gocryptfs reads the target to compute the size, and does).
  for (int i = 0; i < 3; ++i) {
    struct stat again = lstat_of(at("l"));
    EXPECT_EQ(again.st_atim.tv_sec, 1100000000) << "lstat #" << i << " changed the symlink's atime";
    EXPECT_EQ(again.st_size, 1);
  }
}

TEST_F(PosixOps, WritingUpdatesMtime) {
  write_file(at("f"), "x");
  struct timespec old[2] = {{1000, 0}, {1000, 0}};
  ASSERT_OK(::utimensat(AT_FDCWD, at("f").c_str(), old, 0));
  UniqueFd fd(::open(at("f").c_str(), O_WRONLY));
  write_fd_at(fd.get(), 0, "new");
  ASSERT_OK(::fsync(fd.get()));
  fd.reset();
  EXPECT_GT(lstat_of(at("f")).st_mtim.tv_sec, 1000) << "a write must update mtime";
}

// ---- statfs ----

TEST_F(PosixOps, StatfsReportsTheBackingFilesystem) {
  struct statvfs m {
  }, b{};
  ASSERT_OK(::statvfs(mnt().c_str(), &m));
  ASSERT_OK(::statvfs(suite().volume().cipher.c_str(), &b));
  double mt = double(m.f_blocks) * double(m.f_frsize), bt = double(b.f_blocks) * double(b.f_frsize);
  EXPECT_GT(mt, 0);
  EXPECT_NEAR(mt / bt, 1.0, 0.01) << "total size differs from the backing filesystem's";
  double mf = double(m.f_bavail) * double(m.f_frsize), bf = double(b.f_bavail) * double(b.f_frsize);
  EXPECT_NEAR(mf, bf, std::max(0.05 * bf, 512.0 * 1024 * 1024)) << "free space differs from the backing filesystem's";
  EXPECT_GT(m.f_files, 0u);
  EXPECT_GE(m.f_namemax, 255u) << "plain names of up to 255 bytes must be accepted";
}

// ---- xattrs ----

TEST_F(PosixOps, UserXattrsSetGetListRemove) {
  write_file(at("f"), "x");
  const std::string name = std::string("user.") + kNameMarker + "_attr";
  const std::string value = std::string(kContentMarker) + " xattr value";
  const std::string p = at("f");
  ASSERT_OK(::setxattr(p.c_str(), name.c_str(), value.data(), value.size(), 0));
  EXPECT_EQ(::getxattr(p.c_str(), name.c_str(), nullptr, 0), static_cast<ssize_t>(value.size()))
      << "size query must return the plain value's length";
  std::string buf(1000, '\0');
  ssize_t n = ::getxattr(p.c_str(), name.c_str(), buf.data(), buf.size());
  ASSERT_EQ(n, static_cast<ssize_t>(value.size())) << err_name(errno);
  EXPECT_EQ(buf.substr(0, static_cast<size_t>(n)), value);
  char tiny[2];
  EXPECT_ERRNO(::getxattr(p.c_str(), name.c_str(), tiny, sizeof tiny), ERANGE);

  // An empty value and a large one.
  ASSERT_OK(::setxattr(p.c_str(), "user.empty", "", 0, 0));
  EXPECT_EQ(::getxattr(p.c_str(), "user.empty", buf.data(), buf.size()), 0);
  std::string big = marker_content(3000, 17);
  ASSERT_OK(::setxattr(p.c_str(), "user.big", big.data(), big.size(), 0));
  std::string bigback(4000, '\0');
  n = ::getxattr(p.c_str(), "user.big", bigback.data(), bigback.size());
  ASSERT_EQ(n, 3000);
  EXPECT_EQ(bigback.substr(0, 3000), big);

  ssize_t ln = ::listxattr(p.c_str(), nullptr, 0);
  ASSERT_GT(ln, 0);
  std::string list(static_cast<size_t>(ln), '\0');
  ln = ::listxattr(p.c_str(), list.data(), list.size());
  ASSERT_GT(ln, 0);
  std::set<std::string> names;
  for (size_t i = 0; i < static_cast<size_t>(ln); i += strlen(list.c_str() + i) + 1) names.insert(list.c_str() + i);
  EXPECT_EQ(names, (std::set<std::string>{name, "user.empty", "user.big"}));

  EXPECT_ERRNO(::setxattr(p.c_str(), name.c_str(), "v", 1, XATTR_CREATE), EEXIST);
  EXPECT_ERRNO(::setxattr(p.c_str(), "user.absent", "v", 1, XATTR_REPLACE), ENODATA);
  ASSERT_OK(::setxattr(p.c_str(), name.c_str(), "v2", 2, XATTR_REPLACE));
  n = ::getxattr(p.c_str(), name.c_str(), buf.data(), buf.size());
  EXPECT_EQ(buf.substr(0, static_cast<size_t>(std::max<ssize_t>(n, 0))), "v2");

  ASSERT_OK(::removexattr(p.c_str(), name.c_str()));
  EXPECT_ERRNO(::getxattr(p.c_str(), name.c_str(), buf.data(), buf.size()), ENODATA);
  EXPECT_ERRNO(::removexattr(p.c_str(), name.c_str()), ENODATA);
  EXPECT_ERRNO(::getxattr(p.c_str(), "user.never", buf.data(), buf.size()), ENODATA);

  // On a directory too.
  ASSERT_OK(::mkdir(at("d").c_str(), 0755));
  ASSERT_OK(::setxattr(at("d").c_str(), name.c_str(), value.data(), value.size(), 0));
  n = ::getxattr(at("d").c_str(), name.c_str(), buf.data(), buf.size());
  EXPECT_EQ(buf.substr(0, static_cast<size_t>(std::max<ssize_t>(n, 0))), value);
}

TEST_F(PosixOps, NonUserXattrNamespacesAreNotSupported) {
  write_file(at("f"), "x");
  // ENOTSUP and EOPNOTSUPP are the same value on Linux.
  EXPECT_ERRNO(::setxattr(at("f").c_str(), "trusted.veilmark", "v", 1, 0), EOPNOTSUPP);
}

// ---- names ----

TEST_F(PosixOps, NamesOf200And255BytesWork) {
  for (size_t len : {200u, 255u, 176u, 254u}) {
    std::string name = std::string(kNameMarker) + std::string(len - 8, static_cast<char>('a' + len % 26));
    std::string c = marker_content(len * 10, len);
    write_file(at(name), c);
    EXPECT_EQ(read_file(at(name)), c);
    std::string dname = std::string(len, 'D');
    ASSERT_OK(::mkdir(at(dname).c_str(), 0755));
    write_file(at(dname + "/" + name), c);
    EXPECT_EQ(read_file(at(dname + "/" + name)), c);
    std::string renamed = std::string(len, 'R');
    ASSERT_OK(::rename(at(name).c_str(), at(renamed).c_str()));
    EXPECT_EQ(read_file(at(renamed)), c);
    auto names = list_dir(dir());
    EXPECT_TRUE(std::find(names.begin(), names.end(), renamed) != names.end()) << "readdir must list the long name";
    EXPECT_TRUE(std::find(names.begin(), names.end(), name) == names.end());
    ASSERT_OK(::link(at(renamed).c_str(), at(name).c_str()));
    EXPECT_EQ(lstat_of(at(name)).st_nlink, 2u);
    ASSERT_OK(::unlink(at(renamed).c_str()));
    ASSERT_OK(::unlink(at(dname + "/" + name).c_str()));
    ASSERT_OK(::rmdir(at(dname).c_str()));
    suite().ledger().keep(rel(name), c);
  }
  // Multi-byte UTF-8, 255 bytes in all.
  std::string utf;
  while (utf.size() + 3 <= 255 - 8) utf += "\xe2\x82\xac";  // U+20AC
  utf = kNameMarker + utf;
  write_file(at(utf), "euro");
  EXPECT_EQ(read_file(at(utf)), "euro");
}

TEST_F(PosixOps, A256ByteNameGivesENAMETOOLONG) {
  std::string name(256, 'n');
  EXPECT_ERRNO(::open(at(name).c_str(), O_CREAT | O_WRONLY, 0644), ENAMETOOLONG);
  EXPECT_ERRNO(::mkdir(at(name).c_str(), 0755), ENAMETOOLONG);
  EXPECT_ERRNO(::symlink("x", at(name).c_str()), ENAMETOOLONG);
  EXPECT_ERRNO(::mkfifo(at(name).c_str(), 0644), ENAMETOOLONG);
  write_file(at("f"), "x");
  EXPECT_ERRNO(::rename(at("f").c_str(), at(name).c_str()), ENAMETOOLONG);
  EXPECT_ERRNO(::link(at("f").c_str(), at(name).c_str()), ENAMETOOLONG);
  struct stat st {};
  EXPECT_ERRNO(::lstat(at(name).c_str(), &st), ENAMETOOLONG);
  EXPECT_EQ(list_dir(dir()), std::vector<std::string>{"f"});
}

TEST_F(PosixOps, RenameToAnotherFilesystemGivesEXDEV) {
  write_file(at("f"), "x");
  std::string outside = suite().volume().root.path() + "/outside";
  EXPECT_ERRNO(::rename(at("f").c_str(), outside.c_str()), EXDEV);
  EXPECT_ERRNO(::link(at("f").c_str(), outside.c_str()), EXDEV);
}

TEST_F(PosixOps, HardLinksAndInodeIdentitySurviveRemount) {
  std::string c = marker_content(5000, 21);
  ASSERT_OK(::mkdir(at("d").c_str(), 0755));
  write_file(at("a"), c);
  ASSERT_OK(::link(at("a").c_str(), at("d/b").c_str()));
  ASSERT_OK(::chmod(at("a").c_str(), 0604));
  EXPECT_NO_ERROR(suite().remount());
  ASSERT_TRUE(suite().mounted()) << "no mount after remount";
  struct stat sa = lstat_of(at("a")), sb = lstat_of(at("d/b"));
  EXPECT_EQ(sa.st_ino, sb.st_ino);
  EXPECT_EQ(sa.st_nlink, 2u);
  EXPECT_EQ(sb.st_mode & 07777, 0604u);
  {
    UniqueFd fd(::open(at("d/b").c_str(), O_WRONLY | O_APPEND));
    ASSERT_TRUE(fd);
    ASSERT_EQ(::write(fd.get(), "+more", 5), 5);
  }
  EXPECT_EQ(read_file(at("a")), c + "+more");
  suite().ledger().keep(rel("a"), c + "+more");
  suite().ledger().keep(rel("d/b"), c + "+more");
}

// ---- names and symlinks at the edges of the format ----

TEST_F(PosixOps, ReservedBackingNamesAreOrdinaryPlainNames) {
  // Plain names that look like the cipher dir's own files must neither clobber them nor be hidden.
  const std::vector<std::string> names = {
      "veilfs.conf",   "veilfs.diriv",    "veilfs.longname.abc", "veilfs.longname.abc.name",
      "veilfs.link.x", "veilfs.longlink", "gocryptfs.conf"};
  for (const std::string& where : {mnt(), dir()}) {
    for (const auto& n : names) {
      std::string p = where + "/" + n;
      write_file(p, std::string(kContentMarker) + " in " + n);
      if (where != mnt()) suite().ledger().keep(rel(n), std::string(kContentMarker) + " in " + n);
    }
  }
  auto listed = list_dir(dir());
  EXPECT_EQ(listed.size(), names.size());
  for (const auto& n : names) {
    EXPECT_TRUE(std::find(listed.begin(), listed.end(), n) != listed.end()) << n << " not listed";
    EXPECT_EQ(read_file(mnt() + "/" + n), std::string(kContentMarker) + " in " + n);
  }
  // The volume must still mount: its real config was not touched.
  EXPECT_NO_ERROR(suite().remount());
  ASSERT_TRUE(suite().mounted());
  for (const auto& n : names) {
    EXPECT_EQ(read_file(mnt() + "/" + n), std::string(kContentMarker) + " in " + n);
    ASSERT_OK(::unlink((mnt() + "/" + n).c_str()));
  }
}

TEST_F(PosixOps, UnusualCharactersInNames) {
  const std::vector<std::string> names = {".hidden",
                                          "...",
                                          "with space",
                                          " leading",
                                          "trailing ",
                                          "new\nline",
                                          "tab\tchar",
                                          "back\\slash",
                                          "quote\"s",
                                          "colon:semi;",
                                          "*?[glob]",
                                          "\x01\x7f",
                                          "\xff\xfe invalid utf8",
                                          "\xc3\xa9t\xc3\xa9",
                                          "=",
                                          "-",
                                          "~",
                                          std::string(1, '\x80')};
  for (const auto& n : names) write_file(at(n), "name: " + n);
  auto listed = list_dir(dir());
  EXPECT_EQ(std::set<std::string>(listed.begin(), listed.end()), std::set<std::string>(names.begin(), names.end()));
  for (const auto& n : names) EXPECT_EQ(read_file(at(n)), "name: " + n);
}

TEST_F(PosixOps, ManyLongNamesInOneDirectory) {
  // Long names live in sidecars: create, list, rename and delete many of them side by side.
  std::set<std::string> want;
  for (int i = 0; i < 150; ++i) {
    std::string n = std::string(kNameMarker) + std::to_string(i) + std::string(200, 'x');
    write_file(at(n), std::to_string(i));
    want.insert(n);
  }
  auto listed = list_dir(dir());
  EXPECT_EQ(std::set<std::string>(listed.begin(), listed.end()), want);
  for (int i = 0; i < 150; i += 2) {
    std::string n = std::string(kNameMarker) + std::to_string(i) + std::string(200, 'x');
    std::string m = std::string(kNameMarker) + std::to_string(i) + std::string(230, 'y');
    ASSERT_OK(::rename(at(n).c_str(), at(m).c_str()));
    want.erase(n);
    want.insert(m);
  }
  for (int i = 1; i < 150; i += 4) {
    std::string n = std::string(kNameMarker) + std::to_string(i) + std::string(200, 'x');
    ASSERT_OK(::unlink(at(n).c_str()));
    want.erase(n);
  }
  listed = list_dir(dir());
  EXPECT_EQ(std::set<std::string>(listed.begin(), listed.end()), want);
  for (const auto& n : want) {
    std::string num = n.substr(8, n.find_first_of("xy") - 8);
    EXPECT_EQ(read_file(at(n)), num);
    suite().ledger().keep(rel(n), num);
  }
}

TEST_F(PosixOps, LongSymlinkTargetsSurviveRenameLinkAndUnlink) {
  std::string target = std::string(kNameMarker) + "/" + std::string(3000, 'T') + "/end";
  std::string longname = std::string(kNameMarker) + std::string(240, 'S');
  ASSERT_OK(::mkdir(at("d1").c_str(), 0755));
  ASSERT_OK(::mkdir(at("d2").c_str(), 0755));
  ASSERT_OK(::symlink(target.c_str(), at("d1/" + longname).c_str()));
  auto readlink_of = [](const std::string& p) {
    std::string buf(8192, '\0');
    ssize_t n = ::readlink(p.c_str(), buf.data(), buf.size());
    if (n < 0) return "error " + err_name(errno);
    buf.resize(static_cast<size_t>(n));
    return buf;
  };
  EXPECT_TRUE(readlink_of(at("d1/" + longname)) == target);
  ASSERT_OK(::rename(at("d1/" + longname).c_str(), at("d2/short").c_str()));
  EXPECT_TRUE(readlink_of(at("d2/short")) == target) << "after rename: " << readlink_of(at("d2/short")).substr(0, 80);
  // Linux allows hard links to symlinks; both names must keep resolving to the same target.
  ASSERT_OK(::link(at("d2/short").c_str(), at("d1/hardlinked").c_str()));
  ASSERT_OK(::unlink(at("d2/short").c_str()));
  EXPECT_TRUE(readlink_of(at("d1/hardlinked")) == target)
      << "after link + unlink: " << readlink_of(at("d1/hardlinked")).substr(0, 80);
  ASSERT_OK(::rename(at("d1/hardlinked").c_str(), at("d1/" + longname).c_str()));
  EXPECT_NO_ERROR(suite().remount());
  ASSERT_TRUE(suite().mounted());
  EXPECT_TRUE(readlink_of(at("d1/" + longname)) == target) << "after remount";
  EXPECT_EQ(::lstat(at("d1/" + longname).c_str(), &*std::make_unique<struct stat>()), 0);
  ASSERT_OK(::unlink(at("d1/" + longname).c_str()));
  EXPECT_TRUE(list_dir(at("d1")).empty());
}

TEST_F(PosixOps, RenameOverAnOpenFileLeavesTheOpenDescriptorOnTheOldFile) {
  std::string a = marker_content(6000, 24), b = marker_content(9000, 25);
  write_file(at("a"), a);
  write_file(at("b"), b);
  UniqueFd fd(::open(at("b").c_str(), O_RDWR));
  ASSERT_TRUE(fd);
  ASSERT_OK(::rename(at("a").c_str(), at("b").c_str()));
  EXPECT_EQ(read_fd_at(fd.get(), 0, 20000), b);
  write_fd_at(fd.get(), 0, "still-the-old-file");
  EXPECT_EQ(read_file(at("b")), a) << "the new b must not see writes to the replaced file";
  fd.reset();
  EXPECT_EQ(read_file(at("b")), a);
  suite().ledger().keep(rel("b"), a);
}

TEST_F(PosixOps, XattrsFollowRenamesAndHardLinks) {
  std::string longname = std::string(kNameMarker) + std::string(220, 'X');
  write_file(at(longname), "x");
  const std::string v = std::string(kContentMarker) + " attr";
  ASSERT_OK(::setxattr(at(longname).c_str(), "user.veilmark", v.data(), v.size(), 0));
  ASSERT_OK(::mkdir(at("d").c_str(), 0755));
  ASSERT_OK(::rename(at(longname).c_str(), at("d/renamed").c_str()));
  ASSERT_OK(::link(at("d/renamed").c_str(), at("linked").c_str()));
  for (const char* p : {"d/renamed", "linked"}) {
    std::string buf(100, '\0');
    ssize_t n = ::getxattr(at(p).c_str(), "user.veilmark", buf.data(), buf.size());
    ASSERT_GE(n, 0) << p << ": " << err_name(errno);
    EXPECT_EQ(buf.substr(0, static_cast<size_t>(n)), v) << p;
  }
}

// ---- open files across unlink and rename ----

TEST_F(PosixOps, AnUnlinkedOpenFileKeepsWorkingUntilClosed) {
  std::string c = marker_content(10000, 18);
  write_file(at("f"), c);
  UniqueFd fd(::open(at("f").c_str(), O_RDWR));
  ASSERT_TRUE(fd);
  ASSERT_OK(::unlink(at("f").c_str()));
  struct stat st {};
  EXPECT_ERRNO(::lstat(at("f").c_str(), &st), ENOENT);
  EXPECT_TRUE(list_dir(dir()).empty());
  // A new file under the same name is a different file.
  write_file(at("f"), "new file");
  EXPECT_EQ(read_fd_at(fd.get(), 0, 20000), c);
  write_fd_at(fd.get(), 9000, std::string(5000, 'w'));
  std::string want = c.substr(0, 9000) + std::string(5000, 'w');
  EXPECT_EQ(read_fd_at(fd.get(), 0, 20000), want);
  ASSERT_OK(::fstat(fd.get(), &st));
  EXPECT_EQ(st.st_size, 14000);
  EXPECT_EQ(st.st_nlink, 0u);
  EXPECT_OK(::fsync(fd.get()));
  ASSERT_OK(::ftruncate(fd.get(), 4097));
  EXPECT_EQ(read_fd_at(fd.get(), 0, 20000), want.substr(0, 4097));
  EXPECT_EQ(read_file(at("f")), "new file");
  fd.reset();
  EXPECT_EQ(read_file(at("f")), "new file");
  suite().ledger().keep(rel("f"), "new file");
}

TEST_F(PosixOps, RenamingADirectoryWhileAFileInItIsOpenKeepsTheFileWorking) {
  ASSERT_OK(::mkdir(at("d1").c_str(), 0755));
  ASSERT_OK(::mkdir(at("d1/inner").c_str(), 0755));
  std::string c = marker_content(5000, 19);
  write_file(at("d1/inner/f"), c);
  UniqueFd fd(::open(at("d1/inner/f").c_str(), O_RDWR));
  ASSERT_TRUE(fd);
  ASSERT_OK(::mkdir(at("elsewhere").c_str(), 0755));
  ASSERT_OK(::rename(at("d1").c_str(), at("elsewhere/d2").c_str()));
  write_fd_at(fd.get(), 4000, std::string(3000, 'q'));
  std::string want = c.substr(0, 4000) + std::string(3000, 'q');
  EXPECT_EQ(read_fd_at(fd.get(), 0, 10000), want);
  EXPECT_EQ(read_file(at("elsewhere/d2/inner/f")), want);
  // The kernel may open it again by the new path while the old descriptor is still open.
  UniqueFd fd2(::open(at("elsewhere/d2/inner/f").c_str(), O_RDWR | O_APPEND));
  ASSERT_TRUE(fd2);
  ASSERT_EQ(::write(fd2.get(), "end", 3), 3);
  EXPECT_EQ(read_fd_at(fd.get(), 0, 10000), want + "end");
  ASSERT_OK(::ftruncate(fd.get(), 6000));
  fd.reset();
  fd2.reset();
  EXPECT_EQ(read_file(at("elsewhere/d2/inner/f")), want.substr(0, 6000));
  suite().ledger().keep(rel("elsewhere/d2/inner/f"), want.substr(0, 6000));
}

// ---- sizes and inode numbers ----

TEST_F(PosixOps, StSizeIsExactForEverySize) {
  for (size_t s : {0u, 1u, 15u, 16u, 17u, 4095u, 4096u, 4097u, 8191u, 8192u, 8193u, 65536u, 1048577u}) {
    std::string p = at("s" + std::to_string(s));
    write_file(p, random_bytes(s, s));
    EXPECT_EQ(lstat_of(p).st_size, static_cast<off_t>(s)) << "after write";
  }
  // Also for files the kernel has not cached: a fresh lookup of each name after closing all descriptors.
  auto names = list_dir(dir());
  for (const auto& n : names) EXPECT_EQ(std::to_string(lstat_of(at(n)).st_size), n.substr(1));
}

TEST_F(PosixOps, InodeNumbersAreStableAndDistinct) {
  std::vector<ino_t> inos;
  for (int i = 0; i < 20; ++i) {
    write_file(at("f" + std::to_string(i)), "x");
    inos.push_back(lstat_of(at("f" + std::to_string(i))).st_ino);
  }
  EXPECT_EQ(std::set<ino_t>(inos.begin(), inos.end()).size(), inos.size()) << "inode numbers must be distinct";
  ASSERT_OK(::mkdir(at("sub").c_str(), 0755));
  for (int round = 0; round < 3; ++round)
    for (int i = 0; i < 20; ++i) EXPECT_EQ(lstat_of(at("f" + std::to_string(i))).st_ino, inos[i]);
  ASSERT_OK(::rename(at("f3").c_str(), at("sub/moved").c_str()));
  EXPECT_EQ(lstat_of(at("sub/moved")).st_ino, inos[3]);
  UniqueFd fd(::open(at("f5").c_str(), O_RDONLY));
  struct stat st {};
  ASSERT_OK(::fstat(fd.get(), &st));
  EXPECT_EQ(st.st_ino, inos[5]);
}

// ---- locks ----

TEST_F(PosixOps, AdvisoryLocksWork) {
  write_file(at("f"), "lock me");
  UniqueFd fd(::open(at("f").c_str(), O_RDWR));
  ASSERT_TRUE(fd);
  EXPECT_OK(::flock(fd.get(), LOCK_EX));
  UniqueFd fd2(::open(at("f").c_str(), O_RDWR));
  EXPECT_ERRNO(::flock(fd2.get(), LOCK_EX | LOCK_NB), EWOULDBLOCK);
  EXPECT_OK(::flock(fd.get(), LOCK_UN));
  EXPECT_OK(::flock(fd2.get(), LOCK_EX | LOCK_NB));
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_len = 10;
  EXPECT_OK(::fcntl(fd.get(), F_SETLK, &fl));
}

}  // namespace
}  // namespace veiltest
