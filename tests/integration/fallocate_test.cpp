// fallocate, O_DIRECT and copy_file_range through the mount, as programs use them: punched ranges read as
// zeros (also where the kernel still held dirty or mapped pages) and the backing file gives the space back;
// ZERO_RANGE with and without KEEP_SIZE; COLLAPSE_RANGE and INSERT_RANGE refused with EOPNOTSUPP; util-linux's
// `fallocate --dig-holes`; unaligned O_DIRECT reads and writes that agree with the page cache; and fsck finds
// nothing wrong afterwards. Each test has a volume of its own, so that the cipher dir holds just its file.
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "harness.hpp"

namespace veiltest {
namespace {

class Fallocate : public ::testing::Test {
 protected:
  void SetUp() override {
    VEILTEST_SKIP_WITHOUT_FUSE();
    vol_ = std::make_unique<VolumeDir>("fallocate");
    ASSERT_NO_ERROR(vol_->create());
    mount_ = std::make_unique<Mount>(*vol_);
    ASSERT_TRUE(mount_->ok()) << mount_->error();
  }
  void TearDown() override {
    if (mount_) {
      EXPECT_NO_ERROR(mount_->unmount());
    }
  }
  std::string at(const std::string& name) const { return vol_->mnt + "/veilmark_" + name; }

  // Allocated bytes of the one backing file of the volume (fdatasync first, so delayed allocation is done).
  uint64_t backing_allocated() const {
    for (const auto& n : list_dir(vol_->cipher)) {
      if (n.rfind("veilfs.", 0) == 0) continue;
      std::string p = vol_->cipher + "/" + n;
      UniqueFd fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC));
      struct stat st {};
      if (!fd || ::fdatasync(fd.get()) != 0 || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
      return static_cast<uint64_t>(st.st_blocks) * 512;
    }
    ADD_FAILURE() << "no backing file in " << vol_->cipher;
    return 0;
  }
  // Unmounts, runs `veilfs fsck` on the cipher dir (it must be clean) and mounts again.
  void expect_fsck_clean() {
    ASSERT_NO_ERROR(mount_->unmount());
    mount_.reset();
    RunResult r = run({veilfs_binary(), "fsck", vol_->cipher, "--passfile", vol_->passfile});
    EXPECT_EQ(r.status, 0) << r.output;
    mount_ = std::make_unique<Mount>(*vol_);
    ASSERT_TRUE(mount_->ok()) << mount_->error();
  }
  static void zero(std::string& m, uint64_t off, uint64_t len) {
    if (off < m.size())
      m.replace(off, std::min<uint64_t>(len, m.size() - off),
                std::string(std::min<uint64_t>(len, m.size() - off), '\0'));
  }

  std::unique_ptr<VolumeDir> vol_;
  std::unique_ptr<Mount> mount_;
};

TEST_F(Fallocate, PunchHoleReadsZerosReleasesTheBackingSpaceAndSurvivesARemount) {
  std::string want = marker_content(4 << 20, 1);
  write_file(at("f"), want);
  const uint64_t before = backing_allocated();
  {
    UniqueFd fd(::open(at("f").c_str(), O_RDWR));
    ASSERT_TRUE(fd);
    ASSERT_OK(::fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 1 << 20, 2 << 20));
    ASSERT_OK(::fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 12345, 777));
    struct stat st {};
    ASSERT_OK(::fstat(fd.get(), &st));
    EXPECT_EQ(static_cast<size_t>(st.st_size), want.size());
  }
  zero(want, 1 << 20, 2 << 20);
  zero(want, 12345, 777);
  EXPECT_EQ(first_difference(read_file(at("f")), want), "");
  EXPECT_LE(backing_allocated() + (2 << 20) - 3 * 4096, before) << "the punched blocks still take space";
  expect_fsck_clean();
  EXPECT_EQ(first_difference(read_file(at("f")), want), "");
}

TEST_F(Fallocate, PunchedRangesReadAsZerosAlsoWhereTheKernelHeldDirtyOrMappedPages) {
  std::string want = marker_content(64 * 4096, 2);
  write_file(at("f"), want);
  UniqueFd fd(::open(at("f").c_str(), O_RDWR));
  ASSERT_TRUE(fd);
  // Dirty pages in the writeback cache, not yet sent to the daemon, then a punch over them.
  std::string patch = marker_content(40000, 3);
  write_fd_at(fd.get(), 10000, patch);
  want.replace(10000, patch.size(), patch);
  ASSERT_OK(::fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 8192, 8 * 4096));
  zero(want, 8192, 8 * 4096);
  EXPECT_EQ(first_difference(read_fd_at(fd.get(), 0, want.size()), want), "");
  // A shared mapping of the file sees the zeros, and so does a write through it afterwards.
  void* p = ::mmap(nullptr, want.size(), PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  ASSERT_NE(p, MAP_FAILED) << err_name(errno);
  char* m = static_cast<char*>(p);
  m[30 * 4096] = 'x';  // fault the page in, dirty
  want[30 * 4096] = 'x';
  ASSERT_OK(::fallocate(fd.get(), FALLOC_FL_ZERO_RANGE, 29 * 4096, 4 * 4096));
  zero(want, 29 * 4096, 4 * 4096);
  EXPECT_EQ(first_difference(std::string(m, want.size()), want), "") << "the mapping shows stale data";
  m[31 * 4096 + 5] = 'y';
  want[31 * 4096 + 5] = 'y';
  ASSERT_OK(::msync(p, want.size(), MS_SYNC));
  ASSERT_OK(::munmap(p, want.size()));
  fd.reset();
  EXPECT_EQ(first_difference(read_file(at("f")), want), "");
  expect_fsck_clean();
  EXPECT_EQ(first_difference(read_file(at("f")), want), "");
}

TEST_F(Fallocate, ZeroRangeZeroesAndGrowsTheFileUnlessKeepSize) {
  std::string want = marker_content(50000, 4);
  write_file(at("f"), want);
  UniqueFd fd(::open(at("f").c_str(), O_RDWR));
  ASSERT_TRUE(fd);
  ASSERT_OK(::fallocate(fd.get(), FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 40000, 100000));
  zero(want, 40000, 100000);
  struct stat st {};
  ASSERT_OK(::fstat(fd.get(), &st));
  EXPECT_EQ(static_cast<size_t>(st.st_size), want.size());
  ASSERT_OK(::fallocate(fd.get(), FALLOC_FL_ZERO_RANGE, 30000, 200000));
  zero(want, 30000, 200000);
  want.resize(230000, '\0');
  ASSERT_OK(::fstat(fd.get(), &st));
  EXPECT_EQ(static_cast<size_t>(st.st_size), want.size());
  EXPECT_EQ(first_difference(read_fd_at(fd.get(), 0, want.size() + 10), want), "");
  EXPECT_GE(backing_allocated(), want.size()) << "ZERO_RANGE reserves the range's space";
  fd.reset();
  expect_fsck_clean();
  EXPECT_EQ(first_difference(read_file(at("f")), want), "");
}

TEST_F(Fallocate, CollapseAndInsertRangeAreRefusedWithEopnotsuppAndChangeNothing) {
  std::string want = marker_content(10 * 4096, 5);
  write_file(at("f"), want);
  UniqueFd fd(::open(at("f").c_str(), O_RDWR));
  ASSERT_TRUE(fd);
  EXPECT_ERRNO(::fallocate(fd.get(), FALLOC_FL_COLLAPSE_RANGE, 4096, 4096), EOPNOTSUPP);
  EXPECT_ERRNO(::fallocate(fd.get(), FALLOC_FL_INSERT_RANGE, 4096, 4096), EOPNOTSUPP);
  EXPECT_ERRNO(::fallocate(fd.get(), FALLOC_FL_UNSHARE_RANGE, 0, 4096), EOPNOTSUPP);
  EXPECT_EQ(first_difference(read_file(at("f")), want), "");
}

TEST_F(Fallocate, DigHolesMakesTheZeroBlocksOfAFileSparse) {
  // util-linux's `fallocate --dig-holes`, as one would run on a disk image: it punches every run of zeros.
  std::string want =
      marker_content(100000, 6) + std::string(3 << 20, '\0') + marker_content(5000, 7) + std::string(1 << 20, '\0');
  write_file(at("img"), want);
  const uint64_t before = backing_allocated();
  RunResult r = run({"fallocate", "--dig-holes", at("img")});
  if (r.status == 127 || r.status == -1) GTEST_SKIP() << "util-linux fallocate is not installed";
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(first_difference(read_file(at("img")), want), "");
  EXPECT_LE(backing_allocated() + (4 << 20) - 64 * 1024, before) << "the zero runs still take space";
  expect_fsck_clean();
  EXPECT_EQ(first_difference(read_file(at("img")), want), "");
}

TEST_F(Fallocate, UnalignedODirectReadsAndWritesWorkAndAgreeWithThePageCache) {
  // The kernel sends O_DIRECT requests straight to the daemon at any offset, length and buffer address (FUSE
  // has no alignment rule, unlike ext4's EINVAL); they must see what buffered and mapped I/O wrote, and the
  // other way round.
  std::string want = marker_content(300000, 8);
  write_file(at("f"), want);
  UniqueFd buffered(::open(at("f").c_str(), O_RDWR));
  UniqueFd direct(::open(at("f").c_str(), O_RDWR | O_DIRECT));
  ASSERT_TRUE(buffered);
  ASSERT_TRUE(direct) << err_name(errno);
  std::unique_ptr<char, decltype(&std::free)> mem(static_cast<char*>(std::aligned_alloc(4096, 1 << 20)), &std::free);
  char* buf = mem.get() + 3;  // an unaligned user buffer
  std::string patch = marker_content(50001, 9);
  std::memcpy(buf, patch.data(), patch.size());
  ASSERT_EQ(::pwrite(direct.get(), buf, patch.size(), 12345), static_cast<ssize_t>(patch.size())) << err_name(errno);
  want.replace(12345, patch.size(), patch);
  EXPECT_EQ(first_difference(read_fd_at(buffered.get(), 0, want.size()), want), "");
  // Dirty cached pages, then an O_DIRECT read of them.
  std::string patch2 = marker_content(7777, 10);
  write_fd_at(buffered.get(), 200001, patch2);
  want.replace(200001, patch2.size(), patch2);
  ssize_t n = ::pread(direct.get(), buf, 100000, 150007);
  ASSERT_EQ(n, 100000) << err_name(errno);
  EXPECT_EQ(first_difference(std::string(buf, 100000), want.substr(150007, 100000)), "");
  // Past the end: short, like any read.
  n = ::pread(direct.get(), buf, 10000, want.size() - 10);
  EXPECT_EQ(n, 10);
  direct.reset();
  buffered.reset();
  expect_fsck_clean();
  EXPECT_EQ(first_difference(read_file(at("f")), want), "");
}

// xfstests generic/451: whole-file O_DIRECT writes through Linux AIO (io_submit), alternating two patterns, while
// buffered readers read the file in a loop; after each write has completed, a buffered read must see what it
// wrote. The kernel's asynchronous FUSE direct I/O left the pages the readers filled during the write in the
// cache (stale data on the first round, every time), so the daemon does not offer it.
TEST_F(Fallocate, AnAioDirectWriteIsSeenByTheNextBufferedReadWhileOthersRead) {
  constexpr size_t kSize = 655360;
  const std::string f = at("aio");
  void* raw[2];
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(::posix_memalign(&raw[i], 4096, kSize), 0);
    std::memset(raw[i], i ? 0xaa : 0x55, kSize);
  }
  std::unique_ptr<void, decltype(&std::free)> keep0(raw[0], std::free), keep1(raw[1], std::free);
  {
    UniqueFd fd(::open(f.c_str(), O_RDWR | O_CREAT | O_DIRECT | O_CLOEXEC, 0600));
    ASSERT_TRUE(fd) << err_name(errno);
    ASSERT_EQ(::pwrite(fd.get(), raw[0], kSize, 0), static_cast<ssize_t>(kSize));
    ASSERT_OK(::fsync(fd.get()));
  }
  aio_context_t ctx = 0;
  ASSERT_OK(static_cast<int>(::syscall(SYS_io_setup, 1, &ctx)));
  std::atomic<bool> stop{false};
  std::vector<std::thread> readers;
  for (int r = 0; r < 2; ++r)
    readers.emplace_back([&] {
      std::string buf(kSize, '\0');
      while (!stop) {
        UniqueFd rfd(::open(f.c_str(), O_RDONLY | O_CLOEXEC));
        if (rfd) [[maybe_unused]]
          ssize_t n = ::pread(rfd.get(), buf.data(), kSize, 0);
      }
    });
  std::string seen(kSize, '\0');
  int stale_round = -1;
  for (int round = 0; round < 200 && stale_round < 0; ++round) {
    const int k = (round + 1) % 2;
    UniqueFd fd(::open(f.c_str(), O_RDWR | O_DIRECT | O_CLOEXEC));
    ASSERT_TRUE(fd) << err_name(errno);
    struct iocb cb {};
    cb.aio_fildes = static_cast<uint32_t>(fd.get());
    cb.aio_lio_opcode = IOCB_CMD_PWRITE;
    cb.aio_buf = reinterpret_cast<uint64_t>(raw[k]);
    cb.aio_nbytes = kSize;
    struct iocb* list[1] = {&cb};
    ASSERT_EQ(::syscall(SYS_io_submit, ctx, 1, list), 1) << err_name(errno);
    struct io_event ev {};
    ASSERT_EQ(::syscall(SYS_io_getevents, ctx, 1, 1, &ev, nullptr), 1) << err_name(errno);
    ASSERT_EQ(ev.res, static_cast<int64_t>(kSize));
    fd = UniqueFd();
    UniqueFd rfd(::open(f.c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_EQ(::pread(rfd.get(), seen.data(), kSize, 0), static_cast<ssize_t>(kSize));
    if (std::memcmp(seen.data(), raw[k], kSize) != 0) stale_round = round;
  }
  stop = true;
  for (auto& t : readers) t.join();
  ::syscall(SYS_io_destroy, ctx);
  EXPECT_EQ(stale_round, -1) << "a buffered read after an AIO direct write returned the old contents";
}

TEST_F(Fallocate, CopyFileRangeCopiesBetweenFilesAndWithinOne) {
  std::string a = marker_content(200000, 11), b = marker_content(3000, 12);
  write_file(at("a"), a);
  write_file(at("b"), b);
  UniqueFd fa(::open(at("a").c_str(), O_RDWR)), fb(::open(at("b").c_str(), O_RDWR));
  ASSERT_TRUE(fa && fb);
  auto copy = [](int in, uint64_t from, int out, uint64_t to, size_t len) {
    off_t i = static_cast<off_t>(from), o = static_cast<off_t>(to);
    size_t done = 0;
    while (done < len) {
      ssize_t r = ::copy_file_range(in, &i, out, &o, len - done, 0);
      if (r <= 0) return r < 0 ? -errno : static_cast<ssize_t>(done);
      done += static_cast<size_t>(r);
    }
    return static_cast<ssize_t>(done);
  };
  ASSERT_EQ(copy(fa.get(), 1000, fb.get(), 10000, 150000), 150000);  // past b's end: b grows, with zeros between
  b.resize(160000, '\0');
  b.replace(10000, 150000, a.substr(1000, 150000));
  ASSERT_EQ(copy(fa.get(), 0, fa.get(), 150000, 40000), 40000);  // within a, not overlapping
  a.replace(150000, 40000, a.substr(0, 40000));
  fa.reset();
  fb.reset();
  EXPECT_EQ(first_difference(read_file(at("a")), a), "");
  EXPECT_EQ(first_difference(read_file(at("b")), b), "");
}

}  // namespace
}  // namespace veiltest
