// Reverse mode through the real daemon and real programs: the encrypted view of a plain tree, copied with
// rsync, is a volume that forward mode mounts as the same tree (contents, names, links, the metadata rsync
// keeps) and fsck finds clean; the view is the same bytes after a remount (an incremental rsync transfers
// nothing, and after a change only that file); it refuses every change; tampering with the copy is caught.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "harness.hpp"
#include "veilfs/reverse/reverse_view.hpp"
#include "veilfs/volume.hpp"

namespace veiltest {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

class Reverse : public ::testing::Test {
 protected:
  void SetUp() override {
    VEILTEST_SKIP_WITHOUT_FUSE();
    root_ = std::make_unique<TempDir>("reverse");
    plain = root_->path() + "/plain";
    view = root_->path() + "/view";
    copy = root_->path() + "/copy";
    fwd = root_->path() + "/fwd";
    passfile = root_->path() + "/pass";
    for (const auto& d : {plain, view, copy, fwd}) fs::create_directories(d);
    write_file(passfile, "reverse passphrase\n", 0600);
    guard_.mnts = {view, fwd};
  }
  void make_volume() {
    veil::CreateOptions o;
    o.kdf = {1, 1u << 16};
    o.reverse = true;
    o.config_file = plain + "/" + std::string(veil::reverse::kReverseConfigName);
    const std::string pass = "reverse passphrase";
    veil::Volume::create(plain, {reinterpret_cast<const uint8_t*>(pass.data()), pass.size()}, o);
  }
  RunResult veilfs(std::vector<std::string> args) {
    args.insert(args.begin(), veilfs_binary());
    RunOptions o;
    o.timeout = 60s;
    return run(args, o);
  }
  void mount_view() {
    auto r = veilfs({"--reverse", "--passfile", passfile, plain, view});
    ASSERT_EQ(r.status, 0) << r.output;
  }
  void unmount(const std::string& mnt) {
    auto pids = find_daemons(mnt);
    ASSERT_EQ(run({"fusermount3", "-u", mnt}).status, 0);
    for (pid_t p : pids) ASSERT_TRUE(wait_gone(p, 20s));
  }
  // rsync's summary line for the regular files it sent.
  static long transferred(const std::string& stats) {
    const std::string key = "Number of regular files transferred: ";
    auto at = stats.find(key);
    if (at == std::string::npos) return -1;
    return std::stol(stats.substr(at + key.size()));
  }

  std::unique_ptr<TempDir> root_;
  std::string plain, view, copy, fwd, passfile;
  DetachedMountGuard guard_;
};

TEST_F(Reverse, ACopyOfTheViewMountsAsThePlainTreeAndIncrementalCopiesSendOnlyChanges) {
  // The tree: sizes around block boundaries, a big file, a sparse one, long and non-UTF-8 names, symlinks with
  // short and long targets, hard links, an empty file and an empty directory.
  fs::create_directories(plain + "/docs/empty-dir");
  write_file(plain + "/docs/veilmark_note.txt", std::string(kContentMarker) + " a note\n");
  write_file(plain + "/zero", "");
  for (size_t n : {1u, 4095u, 4096u, 4097u, 8192u, 100000u})
    write_file(plain + "/size-" + std::to_string(n), marker_content(n, n));
  write_file(plain + "/big", random_bytes(3 << 20, 7));
  {
    UniqueFd f(::open((plain + "/sparse").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
    ASSERT_EQ(::pwrite(f.get(), "end", 3, 5 << 20), 3);
  }
  write_file(plain + "/docs/" + std::string(240, 'n') + ".veilmark", "a long name\n");
  write_file(plain + "/caf\xe9-latin1", "not UTF-8 at all\n");
  ASSERT_EQ(::symlink("docs/veilmark_note.txt", (plain + "/link").c_str()), 0);
  ASSERT_EQ(::symlink((std::string(2500, 'd') + "/target").c_str(), (plain + "/docs/long-link").c_str()), 0);
  ASSERT_EQ(::link((plain + "/size-1").c_str(), (plain + "/docs/hard").c_str()), 0);
  ASSERT_EQ(::chmod((plain + "/size-1").c_str(), 0640), 0);
  make_volume();

  mount_view();
  auto r = sh("rsync -aH --stats '" + view + "/' '" + copy + "/'");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(scan_for_plaintext(copy, {kNameMarker, kContentMarker, "a long name", "not UTF-8"}),
            std::vector<std::string>{})
      << "nothing plain reaches the copy";

  // Forward mode, same passphrase: the plain tree, byte for byte and with what rsync keeps.
  r = veilfs({"--passfile", passfile, copy, fwd});
  ASSERT_EQ(r.status, 0) << r.output;
  r = sh("diff -r --no-dereference -x .veilfs.reverse.conf '" + plain + "' '" + fwd + "'");
  EXPECT_EQ(r.status, 0) << r.output;
  r = sh("rsync -aHn --out-format='%n' --exclude=.veilfs.reverse.conf '" + plain + "/' '" + fwd + "/'");
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(r.output, "") << "rsync finds nothing to change: modes, times, links and hard links came across";
  struct stat a {
  }, b{};
  ASSERT_EQ(::stat((fwd + "/size-1").c_str(), &a), 0);
  ASSERT_EQ(::stat((fwd + "/docs/hard").c_str(), &b), 0);
  EXPECT_EQ(a.st_ino, b.st_ino) << "hard links stay hard links";
  unmount(fwd);
  r = veilfs({"fsck", "--passfile", passfile, copy});
  EXPECT_EQ(r.status, 0) << r.output;

  // Remounted, the view is the same bytes: an incremental rsync sends nothing; a second full copy is identical.
  unmount(view);
  mount_view();
  r = sh("rsync -aH --stats '" + view + "/' '" + copy + "/'");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(transferred(r.output), 0) << r.output;
  const std::string copy2 = root_->path() + "/copy2";
  r = sh("rsync -aH '" + view + "/' '" + copy2 + "/' && diff -r --no-dereference '" + copy + "' '" + copy2 + "'");
  EXPECT_EQ(r.status, 0) << "two copies of one tree must be byte-identical: " << r.output;

  // A change to one block of one file: the next incremental rsync sends that file alone.
  {
    UniqueFd f(::open((plain + "/big").c_str(), O_WRONLY | O_CLOEXEC));
    ASSERT_EQ(::pwrite(f.get(), "CHANGED", 7, 1 << 20), 7);
    // rsync's quick check compares whole seconds: this test runs within one, a real backup hours later.
    struct stat st {};
    ASSERT_EQ(::fstat(f.get(), &st), 0);
    struct timespec t[2] = {st.st_atim, st.st_mtim};
    t[1].tv_sec += 5;
    ASSERT_EQ(::futimens(f.get(), t), 0);
  }
  r = sh("rsync -aH --stats '" + view + "/' '" + copy + "/'");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(transferred(r.output), 1) << r.output;
  r = veilfs({"--passfile", passfile, copy, fwd});
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(sh("cmp '" + plain + "/big' '" + fwd + "/big'").status, 0);
  unmount(fwd);
}

// A file of several GiB, mostly holes: its holes stay holes in the view, so reading the view costs what its data
// does, and a sparse copy (rsync -S) stays small; forward mode reads it back whole.
TEST_F(Reverse, ASparseFileOfSeveralGibStaysSparseThroughTheViewAndTheCopy) {
  constexpr off_t kSize = off_t{5} << 30;
  {
    UniqueFd f(::open((plain + "/veilmark_disk.img").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
    ASSERT_EQ(::ftruncate(f.get(), kSize), 0);
    for (off_t at : {off_t{0}, off_t{1} << 30, off_t{3} << 30, kSize - 100})
      ASSERT_EQ(::pwrite(f.get(), kContentMarker, std::strlen(kContentMarker), at),
                static_cast<ssize_t>(std::strlen(kContentMarker)));
  }
  make_volume();
  mount_view();
  auto r = sh("rsync -aS '" + view + "/' '" + copy + "/'");
  ASSERT_EQ(r.status, 0) << r.output;
  std::string backing;
  for (const auto& n : list_dir(copy))
    if (n.rfind("veilfs.", 0) != 0) backing = copy + "/" + n;
  struct stat st {};
  ASSERT_EQ(::stat(backing.c_str(), &st), 0);
  EXPECT_GT(st.st_size, kSize) << "the cipher file is the full length";
  EXPECT_LT(st.st_blocks * 512, 64 << 20) << "but its holes are holes";
  r = veilfs({"--passfile", passfile, copy, fwd});
  ASSERT_EQ(r.status, 0) << r.output;
  r = sh("cmp '" + plain + "/veilmark_disk.img' '" + fwd + "/veilmark_disk.img'");
  EXPECT_EQ(r.status, 0) << r.output;
  unmount(fwd);
}

TEST_F(Reverse, TheViewRefusesEveryChangeWithErofs) {
  write_file(plain + "/veilmark_f", "x");
  fs::create_directories(plain + "/d");
  make_volume();
  mount_view();
  std::string file, dir;
  for (const auto& n : list_dir(view)) {
    struct stat st {};
    ASSERT_EQ(::lstat((view + "/" + n).c_str(), &st), 0);
    if (n.rfind("veilfs.", 0) == 0) continue;
    (S_ISDIR(st.st_mode) ? dir : file) = view + "/" + n;
  }
  ASSERT_FALSE(file.empty());
  ASSERT_FALSE(dir.empty());
  EXPECT_EQ(::open(file.c_str(), O_WRONLY | O_CLOEXEC), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(::open((view + "/new").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(::mkdir((view + "/newdir").c_str(), 0755), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(::unlink(file.c_str()), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(::rmdir(dir.c_str()), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(::rename(file.c_str(), (view + "/moved").c_str()), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(::chmod(file.c_str(), 0600), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(::truncate(file.c_str(), 0), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(::symlink("x", (view + "/sl").c_str()), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(read_file(plain + "/veilmark_f"), "x") << "the plain tree is untouched";
}

TEST_F(Reverse, TamperingWithTheCopyIsCaughtAndAFileChangingUnderAReaderFailsTheRead) {
  write_file(plain + "/veilmark_data", marker_content(50000, 3));
  make_volume();
  mount_view();
  auto r = sh("rsync -a '" + view + "/' '" + copy + "/'");
  ASSERT_EQ(r.status, 0) << r.output;
  std::string backing;
  for (const auto& n : list_dir(copy))
    if (n.rfind("veilfs.", 0) != 0) backing = copy + "/" + n;
  {
    UniqueFd f(::open(backing.c_str(), O_RDWR | O_CLOEXEC));
    char c;
    ASSERT_EQ(::pread(f.get(), &c, 1, 30000), 1);
    c = static_cast<char>(c ^ 0x40);
    ASSERT_EQ(::pwrite(f.get(), &c, 1, 30000), 1);
  }
  r = veilfs({"--passfile", passfile, copy, fwd});
  ASSERT_EQ(r.status, 0) << r.output;
  {
    UniqueFd f(::open((fwd + "/veilmark_data").c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(f);
    std::string buf(4096, '\0');
    EXPECT_EQ(::pread(f.get(), buf.data(), buf.size(), 0), 4096) << "the blocks before it read";
    EXPECT_EQ(::pread(f.get(), buf.data(), buf.size(), 7 * 4096), -1) << "byte 30000 is in block 7";
    EXPECT_EQ(errno, EIO) << "a tampered block reads as EIO";
  }
  unmount(fwd);

  // The plain file changes while a reader is half-way through it in the view: the rest of the read fails.
  const std::string vfile = view + "/" + fs::path(backing).filename().string();
  UniqueFd f(::open(vfile.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC));  // no readahead past what is asked
  ASSERT_TRUE(f) << err_name(errno);
  void* raw = nullptr;
  ASSERT_EQ(::posix_memalign(&raw, 4096, 8192), 0);
  std::unique_ptr<void, decltype(&std::free)> keep(raw, std::free);
  ASSERT_EQ(::pread(f.get(), raw, 8192, 0), 8192);
  write_file(plain + "/veilmark_data", marker_content(60000, 4));
  EXPECT_EQ(::pread(f.get(), raw, 8192, 8192), -1);
  EXPECT_EQ(errno, ESTALE);
}

TEST_F(Reverse, ExcludedPathsAreNotInTheViewNorInItsCopy) {
  fs::create_directories(plain + "/web/node_modules/lib");
  fs::create_directories(plain + "/build");
  fs::create_directories(plain + "/src/build");
  write_file(plain + "/web/node_modules/lib/index.js", "module\n");
  write_file(plain + "/web/app.js", "app\n");
  write_file(plain + "/build/out.o", "object\n");
  write_file(plain + "/src/build/keep.c", "kept: only /build is anchored\n");
  write_file(plain + "/scratch.tmp", "tmp\n");
  write_file(plain + "/keep.tmp", "kept by a negation\n");
  const std::string list = root_->path() + "/excludes";
  write_file(list, "# caches\n*.tmp\n!keep.tmp\n");
  make_volume();
  auto r = veilfs({"--reverse", "--exclude", "node_modules", "--exclude", "/build/", "--exclude-from", list,
                   "--passfile", passfile, plain, view});
  ASSERT_EQ(r.status, 0) << r.output;
  r = sh("rsync -a '" + view + "/' '" + copy + "/'");
  ASSERT_EQ(r.status, 0) << r.output;
  r = veilfs({"--passfile", passfile, copy, fwd});
  ASSERT_EQ(r.status, 0) << r.output;
  r = sh("cd '" + fwd + "' && find . | sort");
  EXPECT_EQ(r.output, ".\n./keep.tmp\n./src\n./src/build\n./src/build/keep.c\n./web\n./web/app.js\n");
  unmount(fwd);
  unmount(view);
  // Without --reverse, or with a pattern that cannot be read: a usage error, nothing mounted.
  r = veilfs({"--exclude", "x", "--passfile", passfile, plain, view});
  EXPECT_EQ(r.status, 2) << r.output;
  r = veilfs({"--reverse", "--exclude", "[oops", "--passfile", passfile, plain, view});
  EXPECT_EQ(r.status, 2) << r.output;
  r = veilfs({"--reverse", "--exclude-from", root_->path() + "/none", "--passfile", passfile, plain, view});
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_FALSE(is_mountpoint(view));
}

}  // namespace
}  // namespace veiltest
