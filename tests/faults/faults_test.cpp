// Fault injection against the real daemon: a full disk, SIGKILL in the middle of heavy writing, and a backing
// dir changed underneath a mount. Each checks what the user must be able to rely on afterwards, and fsck.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "../common/daemon_harness.hpp"
#include "fsck/checker.hpp"
#include "veilfs/layout/cipher_dir.hpp"
#include "veilfs/util/io.hpp"
#include "veilfs/volume.hpp"

namespace veil::faults {
namespace {

using namespace veil::daemon_harness;  // NOLINT: the whole harness is this suite's vocabulary
constexpr std::string_view kPass = "faults passphrase";
constexpr uint32_t kB = format::kDefaultBlockSize;

std::span<const uint8_t> pass_bytes() { return bytes_of(kPass); }

// A scratch volume; on_tmpfs: its backing dir on an 8 MiB tmpfs (check .tmpfs: mounting one needs root).
struct Scratch : daemon_harness::Scratch {
  explicit Scratch(bool on_tmpfs = false) : daemon_harness::Scratch("faults", kPass, on_tmpfs ? "size=8m" : "") {}
};

struct Daemon : daemon_harness::Daemon {
  explicit Daemon(const Scratch& s) : daemon_harness::Daemon(s, {std::chrono::seconds(20), std::chrono::seconds(20)}) {}
};

int in_child(const std::function<int()>& fn, int seconds = 15) { return run_in_child(fn, seconds); }

// What differs, for a failure message (call only once a read is known not to hang).
std::string describe_mismatch(const std::string& path, std::span<const uint8_t> expect) {
  std::ifstream in(path, std::ios::binary);
  std::vector<uint8_t> got((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  struct stat st {};
  ::stat(path.c_str(), &st);
  size_t first = 0;
  while (first < got.size() && first < expect.size() && got[first] == expect[first]) ++first;
  return "expected " + std::to_string(expect.size()) + " bytes, read " + std::to_string(got.size()) + " (st_size " +
         std::to_string(st.st_size) + ", inode " + std::to_string(st.st_ino) + "), first difference at byte " +
         std::to_string(first);
}

fsck::Report run_fsck(const std::string& cipher) { return fsck::check_volume(cipher, pass_bytes(), {}); }

// ---------------------------------------------------------------------------------------------------------------

TEST(Faults, FullDiskFailsWithEnospcDamagesNothingAndRecovers) {
  SKIP_WITHOUT_FUSE();
  Scratch s(/*on_tmpfs=*/true);
  if (!s.tmpfs) {
    std::fprintf(stderr, "\n!!!!!!!! SKIPPED (NOT RUN): cannot mount a tmpfs (not root?) !!!!!!!!\n\n");
    GTEST_SKIP() << "cannot mount a tmpfs";
  }
  Daemon d(s);
  ASSERT_TRUE(d.ok());
  const auto keep = pattern(1 << 20, 1), tail = pattern(5000, 2), more = pattern(20000, 3);
  ASSERT_EQ(write_file(s.mnt + "/keep", keep), 0);
  ASSERT_EQ(write_file(s.mnt + "/tail", tail), 0);

  // Fill the disk: some write, fsync or close must fail, and with ENOSPC.
  int fill_err = in_child([&] { return write_file(s.mnt + "/big", pattern(16 << 20, 4)); }, 30);
  EXPECT_EQ(fill_err, ENOSPC) << "filling the disk failed with " << fill_err << " (" << std::strerror(fill_err) << ")";
  // Appending to a file whose last block is partial, on a full disk: may fail, must not damage what was there.
  int append_err = in_child([&] { return write_file(s.mnt + "/tail", more, O_APPEND); });
  std::printf("full disk: filling failed with %s, appending with %s\n", std::strerror(fill_err),
              append_err ? std::strerror(append_err) : "no error");
  EXPECT_TRUE(append_err == 0 || append_err == ENOSPC) << "append on a full disk: " << std::strerror(append_err);
  EXPECT_EQ(in_child([&] { return check_file(s.mnt + "/keep", keep); }), 0) << "data written before the disk filled";
  int tail_state = in_child([&] {
    int fd = ::open((s.mnt + "/tail").c_str(), O_RDONLY);
    if (fd < 0) return errno;
    std::vector<uint8_t> got(64 * 1024);
    ssize_t n = ::read(fd, got.data(), got.size());
    int e = n < 0 ? errno : 0;
    ::close(fd);
    if (e) return e;
    return n >= 5000 && std::equal(tail.begin(), tail.end(), got.begin()) ? 0 : kMismatch;
  });
  EXPECT_EQ(tail_state, 0) << "the file appended to on a full disk no longer reads back its old contents";

  // Free the space: everything works again.
  EXPECT_EQ(in_child([&] { return ::unlink((s.mnt + "/big").c_str()) == 0 ? 0 : errno; }), 0);
  const auto after = pattern(1 << 20, 5);
  EXPECT_EQ(in_child([&] { return write_file(s.mnt + "/after", after); }), 0)
      << "writing after freeing space" << d.log();
  EXPECT_EQ(in_child([&] { return check_file(s.mnt + "/after", after); }), 0);
  EXPECT_EQ(in_child([&] { return check_file(s.mnt + "/keep", keep); }), 0);
  EXPECT_EQ(d.unmount(), 0) << d.log();

  fsck::Report r = run_fsck(s.cipher);
  EXPECT_EQ(r.sorted_lines(), std::vector<std::string>{}) << "fsck after a full disk";
}

TEST(Faults, SigkillDuringHeavyWritingLosesNothingFsynced) {
  SKIP_WITHOUT_FUSE();
  Scratch s;
  auto d = std::make_unique<Daemon>(s);
  ASSERT_TRUE(d->ok());

  // Each writer creates files, writes, fsyncs and closes them, and renames every third one. What completed is
  // recorded after it completed; what was under way is recorded before it started.
  std::mutex mu;
  std::condition_variable cv;
  std::map<std::string, uint32_t> committed;  // plain name -> content seed
  std::set<std::string> in_flight;
  std::atomic<bool> stop{false};
  auto size_of = [](uint32_t seed) { return static_cast<size_t>(seed * 7919u % (300 * 1024)) + 1; };
  auto writer = [&](int w) {
    for (uint32_t i = 0; !stop; ++i) {
      const uint32_t seed = static_cast<uint32_t>(w) * 100000u + i;
      const std::string name = "w" + std::to_string(w) + "-" + std::to_string(i);
      {
        std::lock_guard lk(mu);
        in_flight.insert(name);
      }
      if (write_file(s.mnt + "/" + name, pattern(size_of(seed), seed)) != 0) return;  // the daemon is gone
      std::string final_name = name;
      if (i % 3 == 2) {
        final_name = "r" + name;
        {
          std::lock_guard lk(mu);
          in_flight.insert(final_name);
        }
        if (::rename((s.mnt + "/" + name).c_str(), (s.mnt + "/" + final_name).c_str()) != 0) return;
      }
      std::lock_guard lk(mu);
      in_flight.erase(name);
      in_flight.erase(final_name);
      committed[final_name] = seed;
      cv.notify_all();
    }
  };
  std::thread t1(writer, 1), t2(writer, 2);
  {
    std::unique_lock lk(mu);
    // Enough work done, with more under way, before the kill; bounded so a stuck daemon fails instead of hanging.
    bool enough = cv.wait_for(lk, std::chrono::seconds(30), [&] { return committed.size() >= 40; });
    EXPECT_TRUE(enough) << "writers made too little progress: " << committed.size();
  }
  d->kill9();
  stop = true;
  t1.join();
  t2.join();
  d.reset();

  Daemon again(s);
  ASSERT_TRUE(again.ok()) << "remount after SIGKILL failed";
  for (const auto& [name, seed] : committed) {
    auto expect = pattern(size_of(seed), seed);
    EXPECT_EQ(in_child([&] { return check_file(s.mnt + "/" + name, expect); }), 0) << name << " was fsynced";
  }
  // A file being written at the kill may be short or unreadable (EIO), never wrong: each byte is what was written,
  // or zero where a block had not reached the disk.
  for (const auto& name : in_flight) {
    std::string base = name[0] == 'r' ? name.substr(1) : name;
    uint32_t w = static_cast<uint32_t>(base[1] - '0'), i = static_cast<uint32_t>(std::stoul(base.substr(3)));
    uint32_t seed = w * 100000u + i;
    auto expect = pattern(size_of(seed), seed);
    int r = in_child([&] {
      int fd = ::open((s.mnt + "/" + name).c_str(), O_RDONLY);
      if (fd < 0) return errno == ENOENT ? 0 : errno;
      std::vector<uint8_t> got(expect.size() + 1);
      ssize_t n = ::read(fd, got.data(), got.size());
      ::close(fd);
      if (n < 0) return errno == EIO ? 0 : errno;
      for (ssize_t k = 0; k < n; ++k)
        if (static_cast<size_t>(k) >= expect.size() || (got[k] != expect[k] && got[k] != 0)) return kMismatch;
      return 0;
    });
    EXPECT_EQ(r, 0) << name << " (being written at the kill) reads as garbage or fails oddly";
  }
  EXPECT_EQ(again.unmount(), 0);

  fsck::Report rep = run_fsck(s.cipher);
  std::printf("SIGKILL: %zu files fsynced before the kill, %zu under way; fsck: %llu problem(s)\n", committed.size(),
              in_flight.size(), static_cast<unsigned long long>(rep.problem_count));
  for (const auto& p : rep.problems) {
    std::printf("  %s\n", p.line().c_str());
    std::string name = p.path.substr(1);
    EXPECT_TRUE(in_flight.count(name)) << "fsck reports a file that was not being written: " << p.line();
  }
}

TEST(Faults, BackingDirChangedUnderneathGivesEioOrEnoentNeverACrashOrHang) {
  SKIP_WITHOUT_FUSE();
  Scratch s;
  const auto a = pattern(5 * kB, 10), b = pattern(100, 11), c = pattern(3 * kB + 5, 12);
  {
    Daemon d(s);
    ASSERT_TRUE(d.ok());
    ASSERT_EQ(write_file(s.mnt + "/a", a), 0);
    ASSERT_EQ(write_file(s.mnt + "/b", b), 0);
    ASSERT_EQ(write_file(s.mnt + "/c", c), 0);
    ASSERT_EQ(::mkdir((s.mnt + "/dir").c_str(), 0755), 0);
    ASSERT_EQ(write_file(s.mnt + "/dir/inner", b), 0);
    EXPECT_EQ(d.unmount(), 0);
  }
  // Find the backing names with the engines, then change the backing dir behind a fresh mount's back.
  auto vol = Volume::open(s.cipher, pass_bytes());
  auto backing = [&](const std::string& n) { return s.cipher + "/" + vol->names().encrypt(vol->root_iv(), n); };
  Daemon d(s);
  ASSERT_TRUE(d.ok());
  // Removed from outside: ENOENT.
  ASSERT_EQ(::unlink(backing("b").c_str()), 0);
  EXPECT_EQ(in_child([&] { return ::open((s.mnt + "/b").c_str(), O_RDONLY) < 0 ? errno : 0; }), ENOENT);
  // Corrupted from outside: EIO for the damaged block, the rest of the file still reads.
  {
    std::fstream f(backing("a"), std::ios::in | std::ios::out | std::ios::binary);
    const auto at = static_cast<std::streamoff>(vol->content()->layout().slot_offset(1) + 100);
    f.seekg(at);
    const int old = f.get();  // flipped, not set: the byte may already hold any one value
    ASSERT_NE(old, std::char_traits<char>::eof());
    f.seekp(at);
    f.put(static_cast<char>(old ^ 0x5a));
  }
  EXPECT_EQ(in_child([&] { return check_file(s.mnt + "/a", a); }), EIO) << "a corrupted block must read as EIO";
  EXPECT_EQ(
      in_child([&] {
        int fd = ::open((s.mnt + "/a").c_str(), O_RDONLY);
        std::vector<uint8_t> got(kB);
        ssize_t n = ::pread(fd, got.data(), got.size(), 3 * kB);
        ::close(fd);
        return n == static_cast<ssize_t>(kB) && std::equal(got.begin(), got.end(), a.begin() + 3 * kB) ? 0 : kMismatch;
      }),
      0)
      << "an undamaged block of a damaged file must still read";
  // Truncated from outside at a block boundary: detected, not served as a shorter file.
  ASSERT_EQ(::truncate(backing("c").c_str(), static_cast<off_t>(vol->content()->layout().slot_offset(2))), 0);
  EXPECT_EQ(in_child([&] { return check_file(s.mnt + "/c", c); }), EIO) << "a file cut at a block boundary";
  // Added from outside: a foreign file stays hidden, a valid encrypted file appears.
  std::ofstream(s.cipher + "/junk.txt") << "foreign";
  {
    UniqueFd fd(::open(backing("added").c_str(), O_RDWR | O_CREAT | O_EXCL, 0644));
    ContentFile f(vol->content(), std::move(fd));
    f.write(0, a);
  }
  EXPECT_EQ(in_child([&] { return check_file(s.mnt + "/added", a); }), 0) << "a file added from outside";
  EXPECT_EQ(in_child([&] { return ::access((s.mnt + "/junk.txt").c_str(), F_OK) == 0 ? kMismatch : errno; }), ENOENT);
  // A directory removed from outside, with its contents.
  fs::remove_all(backing("dir"));
  EXPECT_EQ(in_child([&] { return ::open((s.mnt + "/dir/inner").c_str(), O_RDONLY) < 0 ? errno : 0; }), ENOENT);
  // And the mount is still alive and answers.
  EXPECT_EQ(in_child([&] {
              std::error_code ec;
              size_t n = 0;
              for (auto it = fs::directory_iterator(s.mnt, ec); !ec && it != fs::directory_iterator(); it.increment(ec))
                ++n;
              return ec ? ec.value() : 0;
            }),
            0);
  EXPECT_TRUE(d.ok()) << "the daemon died: " << d.log();
  EXPECT_EQ(d.unmount(), 0) << d.log();
}

// fsck and the mount agree on every on-disk convention: what the daemon writes checks clean, and what the daemon
// refuses to read after tampering is what fsck reports.
TEST(Faults, FsckAgreesWithTheMount) {
  SKIP_WITHOUT_FUSE();
  Scratch s;
  const std::string long_name(240, 'L'), long_target(4000, 't');
  const auto data = pattern(5 * kB + 17, 20);
  {
    Daemon d(s);
    ASSERT_TRUE(d.ok());
    const std::string dir = s.mnt + "/" + long_name;
    ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0);
    ASSERT_EQ(::mkdir((dir + "/sub").c_str(), 0700), 0);
    ASSERT_EQ(write_file(dir + "/sub/" + long_name, data), 0);
    ASSERT_EQ(write_file(s.mnt + "/plain", data), 0);
    ASSERT_EQ(::symlink(long_target.c_str(), (dir + "/longlink").c_str()), 0);
    ASSERT_EQ(::symlink("plain", (s.mnt + "/" + long_name + ".lnk").c_str()), 0);
    ASSERT_EQ(::setxattr((s.mnt + "/plain").c_str(), "user.comment", "hello", 5, 0), 0);
    ASSERT_EQ(::setxattr(dir.c_str(), "user.tag", "x", 1, 0), 0);
    ASSERT_EQ(::truncate((s.mnt + "/plain").c_str(), 1 << 30), 0);  // a 1 GiB sparse tail
    ASSERT_EQ(::rename(dir.c_str(), (s.mnt + "/moved").c_str()), 0);
    ASSERT_EQ(::link((s.mnt + "/plain").c_str(), (s.mnt + "/hard").c_str()), 0);
    ASSERT_EQ(::mkfifo((s.mnt + "/fifo").c_str(), 0600), 0);
    EXPECT_EQ(d.unmount(), 0);
  }
  fsck::Report clean = run_fsck(s.cipher);
  EXPECT_EQ(clean.sorted_lines(), std::vector<std::string>{}) << "fsck of a volume written by the mount";
  EXPECT_EQ(clean.stats.dirs, 3u);
  EXPECT_EQ(clean.stats.symlinks, 2u);

  // Damage the moved directory's file; the mount must refuse to read it, and fsck must name it.
  auto vol = Volume::open(s.cipher, pass_bytes());
  const std::string moved_enc = vol->names().encrypt(vol->root_iv(), "moved");
  UniqueFd moved(::open((s.cipher + "/" + moved_enc).c_str(), O_RDONLY | O_DIRECTORY));
  const DirIv moved_iv = vol->dir_iv(moved.get(), &vol->root_iv(), moved_enc);
  const std::string sub_enc = vol->names().encrypt(moved_iv, "sub");
  UniqueFd sub(::openat(moved.get(), sub_enc.c_str(), O_RDONLY | O_DIRECTORY));
  const DirIv sub_iv = vol->dir_iv(sub.get(), &moved_iv, sub_enc);
  const std::string file =
      s.cipher + "/" + moved_enc + "/" + sub_enc + "/" + layout::backing_name(vol->names().encrypt(sub_iv, long_name));
  {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    ASSERT_TRUE(f.good()) << "backing file not where the mount's conventions put it";
    // A bit flipped, not a byte set: a set byte may already hold that value (1 run in 256 damaged nothing).
    const auto at = static_cast<std::streamoff>(vol->content()->layout().slot_offset(2) + 64);
    f.seekg(at);
    const int old = f.get();
    ASSERT_NE(old, std::char_traits<char>::eof());
    f.seekp(at);
    f.put(static_cast<char>(old ^ 0x01));
  }
  {
    Daemon d(s);
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(in_child([&] { return check_file(s.mnt + "/moved/sub/" + long_name, data); }), EIO);
    EXPECT_EQ(d.unmount(), 0);
  }
  EXPECT_EQ(
      run_fsck(s.cipher).sorted_lines(),
      std::vector<std::string>{"blocks-bad /moved/sub/" + long_name + ": 1 of 6 blocks fail authentication (block 2)"});
}

// Several processes writing, renaming (also across directories), removing and listing at once for a bounded
// time: no operation fails except by the races POSIX allows (ENOENT for an entry another process just moved),
// every file that survives holds exactly what was written under its seed, and fsck finds the volume clean.
TEST(Faults, ConcurrentWritersRenamersAndListersLeaveACleanVolume) {
  SKIP_WITHOUT_FUSE();
  Scratch s;
  Daemon d(s);
  ASSERT_TRUE(d.ok());
  ASSERT_EQ(::mkdir((s.mnt + "/x").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((s.mnt + "/y").c_str(), 0755), 0);
  const auto deadline = Clock::now() + std::chrono::milliseconds(1500);
  // In a child: say what failed (the exit code alone cannot), then exit with the errno.
  auto fail = [](const char* op, const std::string& path, int err) {
    std::fprintf(stderr, "%s %s: %s\n", op, path.c_str(), std::strerror(err));
    return err;
  };
  auto size_of = [](uint32_t seed) { return static_cast<size_t>(seed * 2654435761u % (40 * 1024)); };
  auto writer = [&](int w) {
    return spawn_child(
        [&, w] {
          for (uint32_t i = 0; Clock::now() < deadline; ++i) {
            const uint32_t seed = static_cast<uint32_t>(w) * 1000000u + i;
            const std::string name = std::to_string(seed);
            const std::string a = s.mnt + (w % 2 ? "/x/" : "/y/") + name;
            if (int e = write_file(a, pattern(size_of(seed), seed))) return fail(g_write_step, a, e);
            std::string where = a;
            if (i % 2 == 0) {
              where = s.mnt + (w % 2 ? "/y/" : "/x/") + name;
              if (::rename(a.c_str(), where.c_str()) != 0) return fail("rename", a, errno);
            }
            if (i % 5 == 4 && ::unlink(where.c_str()) != 0) return fail("unlink", where, errno);
          }
          return 0;
        },
        60);
  };
  auto lister = [&] {
    return spawn_child(
        [&] {
          while (Clock::now() < deadline) {
            for (const char* dir : {"/x", "/y"}) {
              std::error_code ec;
              for (auto it = fs::directory_iterator(s.mnt + dir, ec); !ec && it != fs::directory_iterator();
                   it.increment(ec)) {
                struct stat st {};
                if (::stat(it->path().c_str(), &st) != 0 && errno != ENOENT) return fail("stat", it->path(), errno);
              }
              if (ec) return fail("readdir", s.mnt + dir, ec.value());
            }
          }
          return 0;
        },
        60);
  };
  // All four forked from this thread, then awaited (see spawn_child).
  std::vector<pid_t> pids;
  for (int w = 0; w < 3; ++w) pids.push_back(writer(w));
  pids.push_back(lister());
  for (int i = 0; i < 4; ++i) {
    const int r = wait_child(pids[i]);
    EXPECT_EQ(r, 0) << "process " << i << ": " << std::strerror(r);
  }
  auto verify_all = [&](const char* when) {
    size_t checked = 0;
    for (const char* dir : {"/x", "/y"}) {
      for (const auto& e : fs::directory_iterator(s.mnt + dir)) {
        uint32_t seed = static_cast<uint32_t>(std::stoul(e.path().filename().string()));
        auto expect = pattern(size_of(seed), seed);
        int r = in_child([&] { return check_file(e.path().string(), expect); });
        EXPECT_EQ(r, 0) << when << ": " << e.path() << ": "
                        << (r == kMismatch ? describe_mismatch(e.path().string(), expect) : std::strerror(r));
        ++checked;
      }
    }
    EXPECT_GT(checked, 0u);
  };
  verify_all("while mounted");
  EXPECT_EQ(d.unmount(), 0);
  EXPECT_EQ(run_fsck(s.cipher).sorted_lines(), std::vector<std::string>{});
  Daemon again(s);
  ASSERT_TRUE(again.ok());
  verify_all("after a remount");
  EXPECT_EQ(again.unmount(), 0);
}

}  // namespace
}  // namespace veil::faults
