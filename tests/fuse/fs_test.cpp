// Fs on a real volume in a temporary directory, driven the way the trampolines in src/fuse/ops.cpp drive it
// (no /dev/fuse): every node id the tests get back counts as one kernel lookup until they forget it. The caps
// on cached descriptors and engines are small, and descriptors are counted in /proc/self/fd, so eviction,
// reopening (also after renames and behind Fs's back), pinning of unlinked files and the absence of leaks show.
#include "fuse/fs.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "fuse/fuse_api.hpp"
#include "fuse_test_util.hpp"
#include "veilfs/format/constants.hpp"
#include "veilfs/layout/cipher_dir.hpp"
#include "veilfs/layout/conflicts.hpp"
#include "veilfs/util/error.hpp"
#include "veilfs/volume.hpp"

namespace veil::fuse::testing {
namespace {

constexpr size_t kDescriptors = 4;  // FsLimits::descriptors
constexpr size_t kEngines = 2;      // FsLimits::engines
// Descriptors into the cipher dir an idle Fs holds: the Volume's and the InodeTable root's.
constexpr size_t kBase = 2;
constexpr size_t kBound = kBase + kDescriptors + kEngines;

constexpr int kCreate = O_CREAT | O_EXCL | O_RDWR;

std::vector<uint8_t> pattern(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> out(n);
  for (auto& b : out) b = static_cast<uint8_t>(rng());
  return out;
}

std::vector<uint8_t> file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::span<const uint8_t> passphrase() {
  static const std::string p = "fuse test passphrase";
  return {reinterpret_cast<const uint8_t*>(p.data()), p.size()};
}

using Names = std::vector<std::string>;

class FsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CreateOptions opt;
    opt.kdf = kArgonTesting;
    Volume::create(dir_.path(), passphrase(), opt);
    open_fs();
  }
  void TearDown() override {
    fs_.reset();
    auto left = fds_under(dir_.path());
    EXPECT_EQ(left.size(), 0u) << "descriptors into the cipher dir outlived Fs";
    for (int fd : left) ADD_FAILURE() << fd << " -> " << fd_target(fd);
  }

  // A new Fs over the same volume (the old one goes first: nothing is cached across).
  void open_fs() {
    fs_.reset();
    known_.clear();
    fs_ = std::make_unique<Fs>(Volume::open(dir_.path(), passphrase()), FsLimits{kDescriptors, kEngines});
  }

  // Every node id handed out is a kernel reference, as in reply_entry().
  uint64_t note(const Entry& e) {
    if (e.ino) ++known_[e.ino];
    return e.ino;
  }
  void forget_all() {
    for (auto& [ino, count] : known_) fs_->forget(ino, count);
    known_.clear();
  }

  uint64_t create(uint64_t parent, const std::string& name, const std::vector<uint8_t>& data = {}) {
    uint64_t ino = note(fs_->create(me_, parent, name, S_IFREG | 0644, kCreate));
    if (!data.empty()) fs_->write(ino, data, 0);
    return ino;
  }
  uint64_t mkdir(uint64_t parent, const std::string& name) { return note(fs_->mkdir(me_, parent, name, 0755)); }
  uint64_t lookup(uint64_t parent, const std::string& name) { return note(fs_->lookup(parent, name)); }

  std::vector<uint8_t> read_all(uint64_t ino) {
    std::vector<uint8_t> out(static_cast<size_t>(fs_->getattr(ino).st_size) + 100);
    out.resize(fs_->read(ino, out, 0));
    return out;
  }

  // Plaintext names in a directory, sorted, without "." and "..".
  Names names(uint64_t dir) {
    DirHandle* dh = fs_->opendir(dir);
    Names out;
    fs_->readdir(*dh, 0, [&](const DirEntry& e, uint64_t) {
      if (e.name != "." && e.name != "..") out.push_back(e.name);
      return true;
    });
    fs_->releasedir(dh);
    std::sort(out.begin(), out.end());
    return out;
  }

  // Enough new directories, each with a file written and read, to push every earlier descriptor and engine
  // out of both caches.
  void churn() {
    for (size_t i = 0; i < kDescriptors + kEngines + 2; ++i) {
      std::string name = "churn" + std::to_string(churned_++);
      uint64_t d = mkdir(FUSE_ROOT_ID, name);
      auto data = pattern(100, static_cast<uint32_t>(churned_));
      uint64_t f = create(d, "f", data);
      EXPECT_EQ(read_all(f), data);
    }
  }

  Inode& node(uint64_t ino) { return fs_->table().get(ino); }
  bool has_fd(uint64_t ino) { return fs_->table().cached_fd(node(ino)) != nullptr; }
  bool has_engine(uint64_t ino) { return fs_->engines().cached(node(ino).engine) != nullptr; }
  // The backing name of a node, relative to the cipher dir (its parent is the root).
  std::string backing_in_root(uint64_t ino) {
    auto [parent, name] = fs_->table().location(node(ino));
    EXPECT_EQ(parent.get(), &fs_->table().root());
    return name;
  }

  size_t fds() { return count_fds_under(dir_.path()); }
  size_t deleted_fds() { return count_fds_under(dir_.path(), /*only_deleted=*/true); }

  TempDir dir_;
  std::unique_ptr<Fs> fs_;
  std::map<uint64_t, uint64_t> known_;  // node id -> lookups not yet forgotten
  const Caller me_{::geteuid(), ::getegid()};
  int churned_ = 0;
};

TEST_F(FsTest, CreateWriteAndReadBackThroughLookup) {
  EXPECT_EQ(fds(), kBase);
  auto data = pattern(10000, 1);
  uint64_t a = create(FUSE_ROOT_ID, "a", data);
  auto patch = pattern(300, 2);
  fs_->write(a, patch, 4000);  // across a block boundary
  std::copy(patch.begin(), patch.end(), data.begin() + 4000);
  EXPECT_EQ(read_all(a), data);
  struct stat st = fs_->getattr(a);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0644u);
  EXPECT_EQ(st.st_size, 10000);
  std::vector<uint8_t> buf(100);
  EXPECT_EQ(fs_->read(a, buf, 9950), 50u);  // short only at the end
  EXPECT_EQ(fs_->read(a, buf, 20000), 0u);

  EXPECT_EQ(lookup(FUSE_ROOT_ID, "a"), a);
  EXPECT_EQ(fs_->lookup(FUSE_ROOT_ID, "b").ino, 0u);  // a negative entry, not an error
  EXPECT_EQ(names(FUSE_ROOT_ID), Names{"a"});
  for (const auto& e : std::filesystem::directory_iterator(dir_.path()))
    EXPECT_NE(e.path().filename(), "a") << "plaintext name in the cipher dir";

  churn();  // from disk, not from an engine's state
  ASSERT_FALSE(has_engine(a));
  EXPECT_EQ(read_all(a), data);
  open_fs();
  EXPECT_EQ(read_all(lookup(FUSE_ROOT_ID, "a")), data);
}

TEST_F(FsTest, ForgetDropsTheInodeOnlyAtTheLastLookup) {
  Entry e = fs_->create(me_, FUSE_ROOT_ID, "a", S_IFREG | 0644, kCreate);
  fs_->write(e.ino, pattern(10, 1), 0);
  EXPECT_EQ(fs_->lookup(FUSE_ROOT_ID, "a").ino, e.ino);
  EXPECT_EQ(fs_->lookup(FUSE_ROOT_ID, "a").ino, e.ino);
  EXPECT_EQ(fds(), kBase + 1);  // the engine
  fs_->forget(e.ino, 2);
  EXPECT_NE(fs_->table().find(e.attr.st_dev, e.attr.st_ino), nullptr);
  EXPECT_EQ(read_all(e.ino), pattern(10, 1));
  EXPECT_EQ(fds(), kBase + 1);
  fs_->forget(e.ino, 1);
  EXPECT_EQ(fs_->table().find(e.attr.st_dev, e.attr.st_ino), nullptr);
  EXPECT_EQ(fds(), kBase);  // the engine went with it
  // A new lookup makes a new node that reads the same file.
  uint64_t again = lookup(FUSE_ROOT_ID, "a");
  ASSERT_NE(again, 0u);
  EXPECT_EQ(read_all(again), pattern(10, 1));
}

TEST_F(FsTest, CreateOverAnExistingNameIsEexistOnlyWhenExclusive) {
  uint64_t a = create(FUSE_ROOT_ID, "a", pattern(100, 1));
  EXPECT_EQ(errno_of([&] { fs_->create(me_, FUSE_ROOT_ID, "a", S_IFREG | 0644, kCreate); }), EEXIST);
  Entry e = fs_->create(me_, FUSE_ROOT_ID, "a", S_IFREG | 0644, O_CREAT | O_RDWR);
  note(e);
  EXPECT_EQ(e.ino, a);
  EXPECT_EQ(e.attr.st_size, 100);
  EXPECT_EQ(read_all(a), pattern(100, 1));
  Entry t = fs_->create(me_, FUSE_ROOT_ID, "a", S_IFREG | 0644, O_CREAT | O_RDWR | O_TRUNC);
  note(t);
  EXPECT_EQ(t.ino, a);
  EXPECT_EQ(t.attr.st_size, 0);
  EXPECT_EQ(fs_->getattr(a).st_size, 0);

  mkdir(FUSE_ROOT_ID, "d");
  EXPECT_EQ(errno_of([&] { fs_->mkdir(me_, FUSE_ROOT_ID, "d", 0755); }), EEXIST);
  EXPECT_EQ(errno_of([&] { fs_->mkdir(me_, FUSE_ROOT_ID, "a", 0755); }), EEXIST);
  EXPECT_EQ(errno_of([&] { fs_->create(me_, FUSE_ROOT_ID, "d", S_IFREG | 0644, kCreate); }), EEXIST);
  EXPECT_EQ(errno_of([&] { fs_->create(me_, FUSE_ROOT_ID, "d", S_IFREG | 0644, O_CREAT | O_RDWR); }), EISDIR);
  EXPECT_EQ(errno_of([&] { fs_->link(a, FUSE_ROOT_ID, "d"); }), EEXIST);
  EXPECT_EQ(names(FUSE_ROOT_ID), (Names{"a", "d"}));
}

TEST_F(FsTest, MissingNamesAreEnoent) {
  uint64_t a = create(FUSE_ROOT_ID, "a");
  EXPECT_EQ(errno_of([&] { fs_->unlink(FUSE_ROOT_ID, "nope"); }), ENOENT);
  EXPECT_EQ(errno_of([&] { fs_->rmdir(FUSE_ROOT_ID, "nope"); }), ENOENT);
  EXPECT_EQ(errno_of([&] { fs_->rename(FUSE_ROOT_ID, "nope", FUSE_ROOT_ID, "b", 0); }), ENOENT);
  EXPECT_EQ(errno_of([&] { fs_->rename(FUSE_ROOT_ID, "a", FUSE_ROOT_ID, "nope", RENAME_EXCHANGE); }), ENOENT);
  EXPECT_EQ(errno_of([&] { fs_->rename(FUSE_ROOT_ID, "a", FUSE_ROOT_ID, "b", RENAME_WHITEOUT); }), EINVAL);
  EXPECT_EQ(names(FUSE_ROOT_ID), Names{"a"});
  EXPECT_EQ(lookup(FUSE_ROOT_ID, "a"), a);
}

TEST_F(FsTest, NonDirectoriesWhereADirectoryIsNeededAreEnotdir) {
  auto data = pattern(50, 1);
  uint64_t a = create(FUSE_ROOT_ID, "a", data);
  uint64_t d = mkdir(FUSE_ROOT_ID, "d");
  EXPECT_EQ(errno_of([&] { fs_->lookup(a, "x"); }), ENOTDIR);
  EXPECT_EQ(errno_of([&] { fs_->mkdir(me_, a, "x", 0755); }), ENOTDIR);
  EXPECT_EQ(errno_of([&] { fs_->create(me_, a, "x", S_IFREG | 0644, kCreate); }), ENOTDIR);
  EXPECT_EQ(errno_of([&] { fs_->opendir(a); }), ENOTDIR);
  EXPECT_EQ(errno_of([&] { fs_->rmdir(FUSE_ROOT_ID, "a"); }), ENOTDIR);
  EXPECT_EQ(errno_of([&] { fs_->rename(FUSE_ROOT_ID, "d", FUSE_ROOT_ID, "a", 0); }), ENOTDIR);
  EXPECT_EQ(lookup(FUSE_ROOT_ID, "d"), d);
  EXPECT_EQ(read_all(lookup(FUSE_ROOT_ID, "a")), data);
}

TEST_F(FsTest, DirectoriesWhereAFileIsNeededAreEisdir) {
  auto data = pattern(50, 1);
  create(FUSE_ROOT_ID, "a", data);
  uint64_t d = mkdir(FUSE_ROOT_ID, "d");
  std::vector<uint8_t> buf(10);
  EXPECT_EQ(errno_of([&] { fs_->unlink(FUSE_ROOT_ID, "d"); }), EISDIR);
  EXPECT_EQ(errno_of([&] { fs_->read(d, buf, 0); }), EISDIR);
  EXPECT_EQ(errno_of([&] { fs_->write(d, buf, 0); }), EISDIR);
  EXPECT_EQ(errno_of([&] { fs_->rename(FUSE_ROOT_ID, "a", FUSE_ROOT_ID, "d", 0); }), EISDIR);
  EXPECT_EQ(lookup(FUSE_ROOT_ID, "d"), d);
  EXPECT_EQ(read_all(lookup(FUSE_ROOT_ID, "a")), data);
}

TEST_F(FsTest, RmdirOfANonEmptyDirectoryIsEnotemptyAndKeepsItsIvFile) {
  uint64_t d = mkdir(FUSE_ROOT_ID, "d");
  auto data = pattern(70, 1);
  create(d, "f", data);
  const std::string iv_file = dir_.file(backing_in_root(d) + "/" + std::string(format::kDirIvName));
  ASSERT_TRUE(std::filesystem::exists(iv_file));
  const auto iv = std::filesystem::file_size(iv_file);

  EXPECT_EQ(errno_of([&] { fs_->rmdir(FUSE_ROOT_ID, "d"); }), ENOTEMPTY);
  // rmdir takes the IV file out first; it must be back (a derived IV would decrypt the names too, so only the
  // file itself shows it).
  ASSERT_TRUE(std::filesystem::exists(iv_file));
  EXPECT_EQ(std::filesystem::file_size(iv_file), iv);
  open_fs();
  uint64_t d2 = lookup(FUSE_ROOT_ID, "d");
  EXPECT_EQ(names(d2), Names{"f"});
  EXPECT_EQ(read_all(lookup(d2, "f")), data);

  fs_->unlink(d2, "f");
  fs_->rmdir(FUSE_ROOT_ID, "d");
  EXPECT_EQ(fs_->lookup(FUSE_ROOT_ID, "d").ino, 0u);
  EXPECT_EQ(names(FUSE_ROOT_ID), Names{});
  forget_all();  // as the kernel does; NoDescriptorOutlivesFsAfterARemovedDirectoryIsStillKnown covers not doing so
}

TEST_F(FsTest, RenameOntoANonEmptyDirectoryIsEnotemptyAndNoReplaceOntoAnyNameIsEexist) {
  uint64_t d = mkdir(FUSE_ROOT_ID, "d");
  uint64_t e = mkdir(FUSE_ROOT_ID, "e");
  create(e, "x");
  mkdir(FUSE_ROOT_ID, "empty");
  create(FUSE_ROOT_ID, "a", pattern(10, 1));
  create(FUSE_ROOT_ID, "b", pattern(20, 2));
  const std::string iv_file = dir_.file(backing_in_root(e) + "/" + std::string(format::kDirIvName));

  EXPECT_EQ(errno_of([&] { fs_->rename(FUSE_ROOT_ID, "d", FUSE_ROOT_ID, "e", 0); }), ENOTEMPTY);
  EXPECT_TRUE(std::filesystem::exists(iv_file));  // stripped for the attempt, then put back
  EXPECT_EQ(names(e), Names{"x"});
  EXPECT_EQ(errno_of([&] { fs_->rename(FUSE_ROOT_ID, "a", FUSE_ROOT_ID, "b", RENAME_NOREPLACE); }), EEXIST);
  EXPECT_EQ(errno_of([&] { fs_->rename(FUSE_ROOT_ID, "d", FUSE_ROOT_ID, "empty", RENAME_NOREPLACE); }), EEXIST);
  EXPECT_EQ(read_all(lookup(FUSE_ROOT_ID, "a")), pattern(10, 1));
  EXPECT_EQ(read_all(lookup(FUSE_ROOT_ID, "b")), pattern(20, 2));

  // Onto an empty directory it works.
  fs_->rename(FUSE_ROOT_ID, "d", FUSE_ROOT_ID, "empty", 0);
  EXPECT_EQ(lookup(FUSE_ROOT_ID, "empty"), d);
  EXPECT_EQ(fs_->lookup(FUSE_ROOT_ID, "d").ino, 0u);
  EXPECT_EQ(names(FUSE_ROOT_ID), (Names{"a", "b", "e", "empty"}));
  forget_all();
}

TEST_F(FsTest, RenameOverAnExistingFileKeepsTheReplacedOneReadableThroughItsNode) {
  auto A = pattern(5000, 1), B = pattern(7000, 2);
  uint64_t a = create(FUSE_ROOT_ID, "a", A);
  uint64_t b = create(FUSE_ROOT_ID, "b", B);
  fs_->rename(FUSE_ROOT_ID, "a", FUSE_ROOT_ID, "b", 0);
  EXPECT_EQ(lookup(FUSE_ROOT_ID, "b"), a);
  EXPECT_EQ(fs_->lookup(FUSE_ROOT_ID, "a").ino, 0u);
  EXPECT_EQ(names(FUSE_ROOT_ID), Names{"b"});
  EXPECT_EQ(read_all(a), A);

  churn();
  ASSERT_FALSE(has_engine(b));
  // All that is left of the old b is the descriptor pinned when its name went: an O_PATH one of a deleted file.
  auto deleted = fds_under(dir_.path(), /*only_deleted=*/true);
  ASSERT_EQ(deleted.size(), 1u);
  EXPECT_TRUE(::fcntl(deleted[0], F_GETFL) & O_PATH);
  EXPECT_EQ(fs_->table().cached_fd(node(b))->get(), deleted[0]);
  // Reopened through it (its old name now names a).
  EXPECT_EQ(read_all(b), B);
  EXPECT_EQ(fs_->getattr(b).st_nlink, 0u);
  EXPECT_EQ(read_all(a), A);

  forget_all();
  EXPECT_EQ(deleted_fds(), 0u);  // the replaced file is freed on the backing disk
  EXPECT_EQ(fds(), kBase);
}

TEST_F(FsTest, AnUnlinkedFileStaysReadableAndWritableThroughItsNode) {
  auto data = pattern(9000, 3);
  uint64_t f = create(FUSE_ROOT_ID, "f", data);
  fs_->unlink(FUSE_ROOT_ID, "f");
  EXPECT_EQ(fs_->lookup(FUSE_ROOT_ID, "f").ino, 0u);
  EXPECT_EQ(names(FUSE_ROOT_ID), Names{});

  churn();
  ASSERT_FALSE(has_engine(f));
  ASSERT_TRUE(has_fd(f));
  EXPECT_EQ(deleted_fds(), 1u);  // the pinned descriptor, nothing else
  EXPECT_EQ(read_all(f), data);
  auto more = pattern(100, 4);
  fs_->write(f, more, data.size());
  data.insert(data.end(), more.begin(), more.end());
  churn();
  EXPECT_EQ(read_all(f), data);
  struct stat st = fs_->getattr(f);
  EXPECT_EQ(st.st_nlink, 0u);
  EXPECT_EQ(st.st_size, static_cast<off_t>(data.size()));

  // A new file under the same name is another file.
  auto other = pattern(30, 5);
  uint64_t g = create(FUSE_ROOT_ID, "f", other);
  EXPECT_NE(g, f);
  EXPECT_EQ(read_all(g), other);
  EXPECT_EQ(read_all(f), data);

  forget_all();
  EXPECT_EQ(deleted_fds(), 0u);
  EXPECT_EQ(fds(), kBase);
}

TEST_F(FsTest, MkdirAndReaddirListEveryNameOnceAcrossShortReplies) {
  uint64_t d = mkdir(FUSE_ROOT_ID, "d");
  struct stat st = fs_->getattr(d);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  Names expected{".", ".."};
  for (int i = 0; i < 25; ++i) {
    expected.push_back("file-" + std::to_string(i));
    create(d, expected.back());
  }
  expected.push_back(std::string(200, 'L'));  // a long name: its backing entry has a name sidecar
  create(d, expected.back());
  expected.push_back("sub");
  mkdir(d, "sub");
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(names(FUSE_ROOT_ID), Names{"d"});

  // As READDIRPLUS does: replies of 4 entries, each next request at the position after the last one handed out,
  // and a lookup of each entry by its backing name.
  DirHandle* dh = fs_->opendir(d);
  Names got;
  uint64_t off = 0;
  for (bool full = true; full;) {
    full = false;
    int room = 4;
    fs_->readdir(*dh, off, [&](const DirEntry& e, uint64_t next) {
      if (room-- == 0) {
        full = true;
        return false;
      }
      got.push_back(e.name);
      if (e.name != "." && e.name != "..") {
        uint64_t ino = note(fs_->lookup_backing(*dh->dir, e.backing));
        EXPECT_EQ(ino, lookup(d, e.name)) << e.name;
      }
      off = next;
      return true;
    });
  }
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, expected);

  // Back to the start on the same handle: everything again.
  size_t again = 0;
  fs_->readdir(*dh, 0, [&](const DirEntry&, uint64_t) { return ++again, true; });
  EXPECT_EQ(again, expected.size());
  fs_->releasedir(dh);
}

TEST_F(FsTest, CapsHoldWithMoreFilesThanCapsAndForgetLeavesNoDescriptors) {
  EXPECT_EQ(fds(), kBase);
  size_t max_seen = 0;
  auto check = [&](const std::string& what) {
    size_t n = fds();
    max_seen = std::max(max_seen, n);
    EXPECT_LE(n, kBound) << what;
  };
  struct File {
    uint64_t dir, ino;
    std::string name;
    std::vector<uint8_t> data;
  };
  std::vector<File> files;
  for (int i = 0; i < 12; ++i) {
    uint64_t d = mkdir(FUSE_ROOT_ID, "dir" + std::to_string(i));
    check("mkdir");
    for (int j = 0; j < 3; ++j) {
      File f{d, 0, "f" + std::to_string(j), pattern(3000 + 100 * i + j, static_cast<uint32_t>(10 * i + j))};
      f.ino = create(d, f.name, f.data);
      check("create");
      files.push_back(std::move(f));
    }
  }
  EXPECT_EQ(max_seen, kBound);  // both caches were full: the rest was evicted

  for (auto it = files.rbegin(); it != files.rend(); ++it) {
    EXPECT_EQ(read_all(it->ino), it->data) << it->name;
    check("read");
    fs_->access(it->ino, R_OK);  // caches the file's own O_PATH descriptor
    check("access");
  }
  for (auto& f : files) {
    EXPECT_EQ(lookup(f.dir, f.name), f.ino);
    check("lookup");
  }
  forget_all();
  EXPECT_EQ(fds(), kBase);
}

TEST_F(FsTest, AnEvictedDirectoryReopensAfterItWasRenamed) {
  uint64_t a = mkdir(FUSE_ROOT_ID, "a");
  uint64_t sub = mkdir(a, "sub");
  auto data = pattern(4000, 1);
  uint64_t f = create(sub, "f", data);
  churn();
  fs_->rename(FUSE_ROOT_ID, "a", FUSE_ROOT_ID, "b", 0);
  churn();
  for (uint64_t n : {a, sub, f}) ASSERT_FALSE(has_fd(n));
  ASSERT_FALSE(has_engine(f));
  EXPECT_EQ(read_all(f), data);  // f through sub through b, each reopened from its location
  EXPECT_EQ(lookup(FUSE_ROOT_ID, "b"), a);
  EXPECT_EQ(fs_->lookup(FUSE_ROOT_ID, "a").ino, 0u);
  EXPECT_EQ(lookup(a, "sub"), sub);
  EXPECT_EQ(lookup(sub, "f"), f);
  churn();
  create(sub, "g", pattern(10, 2));
  EXPECT_EQ(names(sub), (Names{"f", "g"}));
  EXPECT_EQ(names(a), Names{"sub"});

  // A fresh Fs finds all of it by name: the renamed directory's IV was written down before its name changed.
  open_fs();
  uint64_t b = lookup(FUSE_ROOT_ID, "b");
  uint64_t sub2 = lookup(b, "sub");
  EXPECT_EQ(read_all(lookup(sub2, "f")), data);
  EXPECT_EQ(read_all(lookup(sub2, "g")), pattern(10, 2));
}

TEST_F(FsTest, AnEvictedFileReopensAfterItWasRenamedToAnotherDirectory) {
  uint64_t d1 = mkdir(FUSE_ROOT_ID, "d1");
  uint64_t d2 = mkdir(FUSE_ROOT_ID, "d2");
  auto data = pattern(6000, 1);
  uint64_t f = create(d1, "f", data);
  fs_->access(f, R_OK);
  ASSERT_TRUE(has_fd(f));
  fs_->rename(d1, "f", d2, "g", 0);
  churn();
  ASSERT_FALSE(has_fd(f));
  ASSERT_FALSE(has_engine(f));
  EXPECT_EQ(read_all(f), data);
  fs_->write(f, pattern(10, 2), 0);
  EXPECT_EQ(lookup(d2, "g"), f);
  EXPECT_EQ(fs_->lookup(d1, "f").ino, 0u);
  EXPECT_EQ(names(d1), Names{});
  EXPECT_EQ(names(d2), Names{"g"});
  churn();
  std::copy_n(pattern(10, 2).begin(), 10, data.begin());
  EXPECT_EQ(read_all(f), data);
}

TEST_F(FsTest, AnObjectMovedBehindFssBackIsEnoentNeverAnotherFile) {
  auto A = pattern(100, 1), B = pattern(100, 2);
  uint64_t f = create(FUSE_ROOT_ID, "f", A);
  uint64_t g = create(FUSE_ROOT_ID, "g", B);
  churn();
  ASSERT_FALSE(has_fd(f));
  ASSERT_FALSE(has_engine(f));
  const std::string fb = backing_in_root(f), gb = backing_in_root(g);
  // In the cipher dir: f's file goes elsewhere, and g's takes its name.
  ASSERT_EQ(std::rename(dir_.file(fb).c_str(), dir_.file("elsewhere").c_str()), 0);
  ASSERT_EQ(std::rename(dir_.file(gb).c_str(), dir_.file(fb).c_str()), 0);
  size_t before = fds();
  std::vector<uint8_t> buf(200);
  EXPECT_EQ(errno_of([&] { fs_->read(f, buf, 0); }), ENOENT);
  EXPECT_EQ(errno_of([&] { fs_->getattr(f); }), ENOENT);
  EXPECT_EQ(errno_of([&] { fs_->write(f, A, 0); }), ENOENT);
  EXPECT_EQ(fds(), before);
  EXPECT_EQ(lookup(FUSE_ROOT_ID, "f"), g);  // the name now finds the object that is there
  EXPECT_EQ(read_all(g), B);
}

TEST_F(FsTest, HardLinksShareOneNode) {
  uint64_t d = mkdir(FUSE_ROOT_ID, "d");
  auto data = pattern(300, 1);
  uint64_t a = create(FUSE_ROOT_ID, "a", data);
  Entry e = fs_->link(a, d, "b");
  note(e);
  EXPECT_EQ(e.ino, a);
  EXPECT_EQ(e.attr.st_nlink, 2u);
  EXPECT_EQ(e.attr.st_size, 300);
  fs_->unlink(FUSE_ROOT_ID, "a");
  churn();
  EXPECT_EQ(read_all(lookup(d, "b")), data);
  EXPECT_EQ(fs_->getattr(a).st_nlink, 1u);
  forget_all();
  EXPECT_EQ(fds(), kBase);
}

TEST_F(FsTest, ADirectoryHandleHoldsOneDescriptorUntilReleased) {
  for (int i = 0; i < 5; ++i) create(FUSE_ROOT_ID, "f" + std::to_string(i));
  const size_t base = fds();
  DirHandle* dh = fs_->opendir(FUSE_ROOT_ID);
  EXPECT_EQ(fds(), base);  // the stream opens at the first READDIR
  size_t listed = 0;
  fs_->readdir(*dh, 0, [&](const DirEntry&, uint64_t) { return ++listed, true; });
  EXPECT_EQ(listed, 7u);
  EXPECT_EQ(fds(), base + 1);
  fs_->releasedir(dh);
  EXPECT_EQ(fds(), base);

  // One the kernel never released goes with Fs (TearDown checks that nothing is left).
  DirHandle* left = fs_->opendir(FUSE_ROOT_ID);
  fs_->readdir(*left, 0, [&](const DirEntry&, uint64_t) { return true; });
  EXPECT_EQ(fds(), base + 1);
}

// A directory the kernel still knows (some process's working directory) is removed, then the filesystem goes
// away: rmdir unindexed its Inode, and TearDown must still find every descriptor closed (the root's included).
TEST_F(FsTest, NoDescriptorOutlivesFsAfterARemovedDirectoryIsStillKnown) {
  uint64_t d = mkdir(FUSE_ROOT_ID, "d");
  create(d, "f");  // caches d's descriptor
  ASSERT_TRUE(has_fd(d));
  fs_->unlink(d, "f");
  fs_->rmdir(FUSE_ROOT_ID, "d");
  EXPECT_EQ(fs_->lookup(FUSE_ROOT_ID, "d").ino, 0u);
}

// A sync service that found two versions of report.txt renamed one of them: the conflict copy is shown under the
// plain name with the service's marker, can be read, renamed to an ordinary name, and deleted.
TEST_F(FsTest, ConflictCopiesOfSyncServicesAreShownReadRenamedAndDeleted) {
  const std::string syncthing = ".sync-conflict-20261202-101500-ABCDEFG";
  const std::string dropbox = " (conflicted copy 2026-12-02 101500)";
  const std::string long_plain = std::string(200, 'L') + ".txt";  // a long name: veilfs.longname.<hash>
  for (const std::string& plain : {std::string("report.txt"), long_plain}) {
    for (const std::string& marker : {syncthing, dropbox}) {
      SCOPED_TRACE(plain.substr(0, 12) + marker);
      auto theirs = pattern(3000, 7), ours = pattern(5000, 8);
      uint64_t t = create(FUSE_ROOT_ID, plain, theirs);
      const std::string b = backing_in_root(t);
      // What the service does: the other version moves aside (placed as the service would place it).
      const std::string copy = layout::conflict_backing_candidates(b, marker).front();
      ASSERT_EQ(::rename(dir_.file(b).c_str(), dir_.file(copy).c_str()), 0);
      forget_all();
      open_fs();
      create(FUSE_ROOT_ID, plain, ours);

      const std::string shown = layout::insert_conflict_marker(plain, marker);
      EXPECT_EQ(names(FUSE_ROOT_ID), (Names{shown, plain}));
      EXPECT_EQ(read_all(lookup(FUSE_ROOT_ID, shown)), theirs);
      EXPECT_EQ(read_all(lookup(FUSE_ROOT_ID, plain)), ours);

      // Renamed, it becomes an ordinary entry under an ordinary encrypted name.
      fs_->rename(FUSE_ROOT_ID, shown, FUSE_ROOT_ID, "theirs.txt", 0);
      EXPECT_EQ(names(FUSE_ROOT_ID), (Names{plain, "theirs.txt"}));
      EXPECT_EQ(read_all(lookup(FUSE_ROOT_ID, "theirs.txt")), theirs);
      EXPECT_FALSE(std::filesystem::exists(dir_.file(copy)));
      EXPECT_EQ(read_all(lookup(FUSE_ROOT_ID, plain)), ours);  // the original's long-name sidecar stayed

      // A second copy, deleted through its shown name; the original keeps its name.
      uint64_t o = lookup(FUSE_ROOT_ID, plain);
      const std::string ob = backing_in_root(o);
      ASSERT_EQ(
          ::link(dir_.file(ob).c_str(), dir_.file(layout::conflict_backing_candidates(ob, marker).front()).c_str()), 0);
      EXPECT_EQ(names(FUSE_ROOT_ID), (Names{shown, plain, "theirs.txt"}));
      fs_->unlink(FUSE_ROOT_ID, shown);
      EXPECT_EQ(names(FUSE_ROOT_ID), (Names{plain, "theirs.txt"}));
      fs_->unlink(FUSE_ROOT_ID, plain);
      fs_->unlink(FUSE_ROOT_ID, "theirs.txt");
      EXPECT_EQ(names(FUSE_ROOT_ID), Names{});
      forget_all();
    }
  }
}

// Deleting the original of a long-name conflict copy must not take the name the copy still needs.
TEST_F(FsTest, TheLongNameOfAConflictCopyOutlivesItsOriginal) {
  const std::string plain = std::string(210, 'q');
  const std::string marker = ".sync-conflict-20261202-101500-ABCDEFG";
  uint64_t f = create(FUSE_ROOT_ID, plain, pattern(10, 1));
  const std::string b = backing_in_root(f);
  ASSERT_EQ(::link(dir_.file(b).c_str(), dir_.file(layout::conflict_backing_candidates(b, marker).front()).c_str()), 0);
  fs_->unlink(FUSE_ROOT_ID, plain);
  const std::string shown = layout::insert_conflict_marker(plain, marker);
  EXPECT_EQ(names(FUSE_ROOT_ID), Names{shown});
  EXPECT_EQ(read_all(lookup(FUSE_ROOT_ID, shown)), pattern(10, 1));
  forget_all();
}

// A conflict copy of a name near the maximum: its shown name is shortened to 255 bytes and still reaches it.
TEST_F(FsTest, AConflictCopyOfANameNearTheMaximumIsShownShortenedAndStillReachable) {
  const std::string plain = std::string(250, 'n') + ".txt";
  const std::string marker = " (conflicted copy 2026-12-02 101500)";
  uint64_t f = create(FUSE_ROOT_ID, plain, pattern(10, 4));
  const std::string b = backing_in_root(f);
  ASSERT_EQ(::link(dir_.file(b).c_str(), dir_.file(layout::conflict_backing_candidates(b, marker).front()).c_str()), 0);
  const std::string shown = layout::shown_conflict_name(plain, marker);
  EXPECT_EQ(shown.size(), format::kMaxPlainNameSize);
  EXPECT_EQ(names(FUSE_ROOT_ID), (Names{shown, plain}));  // sorted: ' ' before 'n'
  EXPECT_EQ(read_all(lookup(FUSE_ROOT_ID, shown)), pattern(10, 4));
  fs_->unlink(FUSE_ROOT_ID, shown);
  EXPECT_EQ(names(FUSE_ROOT_ID), Names{plain});
  forget_all();
}

// A directory whose IV file is missing (a crash before it was written, a sync service that has not delivered it
// yet): the derived IV is written down, fsynced, before anything is named with it.
TEST_F(FsTest, AMissingIvFileIsWrittenWhenItsIvIsDerived) {
  uint64_t d = mkdir(FUSE_ROOT_ID, "d");
  create(d, "f", pattern(10, 2));
  const std::string iv_file = dir_.file(backing_in_root(d) + "/" + std::string(format::kDirIvName));
  const auto iv_before = file_bytes(iv_file);
  forget_all();
  ASSERT_EQ(::unlink(iv_file.c_str()), 0);
  open_fs();
  uint64_t d2 = lookup(FUSE_ROOT_ID, "d");
  EXPECT_EQ(names(d2), Names{"f"});
  ASSERT_TRUE(std::filesystem::exists(iv_file));
  EXPECT_EQ(file_bytes(iv_file), iv_before);
  forget_all();
}

// Another writer (a second mount, a sync service) changed a directory's IV file after this Fs cached the IV:
// names made under the new IV still show, because a name that fails to decode makes the IV be read again.
TEST_F(FsTest, ANewIvFileOnDiskIsReadWhenNamesFailToDecode) {
  uint64_t d = mkdir(FUSE_ROOT_ID, "d");
  uint64_t a = create(d, "a", pattern(10, 3));
  EXPECT_EQ(names(d), Names{"a"});  // the IV is cached now
  auto [parent, a_backing] = fs_->table().location(node(a));
  const std::string ddir = dir_.file(backing_in_root(d));
  forget_all();
  auto other = Volume::open(dir_.path(), passphrase());
  DirIv fresh{};
  fresh[0] = 0x5a;
  fresh[15] = 0xa5;
  UniqueFd dfd(::open(ddir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  layout::write_dir_iv(dfd.get(), fresh);
  const std::string b = layout::backing_name(other->names().encrypt(fresh, "b"));
  ASSERT_EQ(::rename((ddir + "/" + a_backing).c_str(), (ddir + "/" + b).c_str()), 0);
  EXPECT_EQ(names(d), Names{"b"});
  EXPECT_EQ(read_all(lookup(d, "b")), pattern(10, 3));
  forget_all();
}

TEST_F(FsTest, RmdirOfANonEmptyDirectoryNeverTouchesItsIvFile) {
  uint64_t d = mkdir(FUSE_ROOT_ID, "d");
  create(d, "f");
  const std::string iv_file = dir_.file(backing_in_root(d) + "/" + std::string(format::kDirIvName));
  struct stat before, after;
  ASSERT_EQ(::stat(iv_file.c_str(), &before), 0);
  EXPECT_EQ(errno_of([&] { fs_->rmdir(FUSE_ROOT_ID, "d"); }), ENOTEMPTY);
  mkdir(FUSE_ROOT_ID, "e");
  EXPECT_EQ(errno_of([&] { fs_->rename(FUSE_ROOT_ID, "e", FUSE_ROOT_ID, "d", 0); }), ENOTEMPTY);
  ASSERT_EQ(::stat(iv_file.c_str(), &after), 0);
  EXPECT_EQ(after.st_ino, before.st_ino) << "the IV file was removed and put back: a crash in between loses it";
  forget_all();
}

// A backing name that does not decode (renamed by hand or by a tool veilfs does not know) is left out of listings;
// with FsOptions::badname (--badname GLOB) it is shown with a marker, readable, and can be renamed to safety.
TEST_F(FsTest, UndecodableNamesMatchingBadnameAreShownAndCanBeRescued) {
  uint64_t f = create(FUSE_ROOT_ID, "victim", pattern(4000, 9));
  const std::string b = backing_in_root(f);
  forget_all();
  fs_.reset();
  ASSERT_EQ(::rename(dir_.file(b).c_str(), dir_.file("renamed by a tool").c_str()), 0);
  open_fs();
  EXPECT_EQ(names(FUSE_ROOT_ID), Names{});  // not shown by default (logged, and fsck reports it)
  fs_.reset();
  fs_ = std::make_unique<Fs>(Volume::open(dir_.path(), passphrase()), FsLimits{kDescriptors, kEngines},
                             FsOptions{.badname = {"renamed*"}});
  const std::string shown = "renamed by a tool" + std::string(kBadNameSuffix);
  EXPECT_EQ(names(FUSE_ROOT_ID), Names{shown});
  EXPECT_EQ(read_all(lookup(FUSE_ROOT_ID, shown)), pattern(4000, 9));
  fs_->rename(FUSE_ROOT_ID, shown, FUSE_ROOT_ID, "rescued", 0);
  EXPECT_EQ(names(FUSE_ROOT_ID), Names{"rescued"});
  EXPECT_EQ(read_all(lookup(FUSE_ROOT_ID, "rescued")), pattern(4000, 9));
  EXPECT_EQ(fs_->lookup(FUSE_ROOT_ID, "other [undecodable name]").ino, 0u);
  forget_all();
}

}  // namespace
}  // namespace veil::fuse::testing
