// Fs::fallocate driven directly (no /dev/fuse), with the mode bits the kernel passes on: which modes are served
// and which are refused with EOPNOTSUPP, what each does to the size and the contents, and a seeded random run of
// every served mode (with writes and truncates) against an in-memory model. The same run through the kernel is
// the mount exerciser's (tests/integration/exerciser_test.cpp).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "fuse/fs.hpp"
#include "fuse/fuse_api.hpp"
#include "fuse_test_util.hpp"
#include "veilfs/util/io.hpp"
#include "veilfs/volume.hpp"

namespace veil::fuse::testing {
namespace {

constexpr int kPunch = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;

class FsFallocate : public ::testing::Test {
 protected:
  void SetUp() override {
    static const std::string pass = "fallocate test passphrase";
    const std::span<const uint8_t> secret{reinterpret_cast<const uint8_t*>(pass.data()), pass.size()};
    CreateOptions opt;
    opt.kdf = kArgonTesting;
    Volume::create(dir_.path(), secret, opt);
    fs_ = std::make_unique<Fs>(Volume::open(dir_.path(), secret), FsLimits{});
    ino_ = fs_->create(me_, FUSE_ROOT_ID, "f", S_IFREG | 0644, O_CREAT | O_EXCL | O_RDWR).ino;
  }
  void TearDown() override {
    fs_->forget(ino_, 1);
    fs_.reset();
  }
  void write(const std::vector<uint8_t>& data, uint64_t off = 0) {
    fs_->write(ino_, data, off);
    if (model_.size() < off + data.size()) model_.resize(off + data.size(), 0);
    std::copy(data.begin(), data.end(), model_.begin() + static_cast<std::ptrdiff_t>(off));
  }
  std::vector<uint8_t> contents() {
    std::vector<uint8_t> out(static_cast<size_t>(fs_->getattr(ino_).st_size) + 10);
    out.resize(fs_->read(ino_, out, 0));
    return out;
  }
  uint64_t size() { return static_cast<uint64_t>(fs_->getattr(ino_).st_size); }
  // The one regular backing file of the volume: its allocated bytes.
  uint64_t backing_allocated() {
    for (const auto& e : std::filesystem::directory_iterator(dir_.path())) {
      if (!e.is_regular_file() || e.path().filename().string().rfind("veilfs.", 0) == 0) continue;
      UniqueFd fd(::open(e.path().c_str(), O_RDONLY | O_CLOEXEC));
      struct stat st {};
      EXPECT_EQ(::fdatasync(fd.get()), 0);
      EXPECT_EQ(::fstat(fd.get(), &st), 0);
      return static_cast<uint64_t>(st.st_blocks) * 512;
    }
    ADD_FAILURE() << "no backing file";
    return 0;
  }
  static std::vector<uint8_t> bytes(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::vector<uint8_t> v(n);
    for (auto& b : v) b = static_cast<uint8_t>(rng() | 1);  // never zero: a zeroed byte shows
    return v;
  }

  TempDir dir_;
  std::unique_ptr<Fs> fs_;
  const Caller me_{::geteuid(), ::getegid()};
  uint64_t ino_ = 0;
  std::vector<uint8_t> model_;
};

TEST_F(FsFallocate, ModesALocalDiskHasButVeilfsCannotServeAreRefusedWithEopnotsuppAndChangeNothing) {
  write(bytes(5 * 4096, 1));
  for (int mode : {FALLOC_FL_COLLAPSE_RANGE, FALLOC_FL_INSERT_RANGE, FALLOC_FL_UNSHARE_RANGE, FALLOC_FL_PUNCH_HOLE,
                   FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE, FALLOC_FL_NO_HIDE_STALE, 0x80, 0x100}) {
    SCOPED_TRACE("mode " + std::to_string(mode));
    EXPECT_EQ(errno_of([&] { fs_->fallocate(ino_, mode, 4096, 4096); }), EOPNOTSUPP);
    EXPECT_EQ(contents(), model_);
  }
}

TEST_F(FsFallocate, PunchHoleZeroesKeepsTheSizeAndReleasesTheSpace) {
  write(bytes(64 * 4096 + 3, 2));
  const uint64_t before = backing_allocated();
  fs_->fallocate(ino_, kPunch, 4096 + 7, 40 * 4096);
  std::fill(model_.begin() + 4096 + 7, model_.begin() + 4096 + 7 + 40 * 4096, 0);
  EXPECT_EQ(contents(), model_);
  EXPECT_LT(backing_allocated() + 30 * 4096, before);
  // Past the end: nothing, not even a size change.
  fs_->fallocate(ino_, kPunch, size() - 10, 1 << 20);
  std::fill(model_.end() - 10, model_.end(), 0);
  EXPECT_EQ(contents(), model_);
  fs_->fallocate(ino_, kPunch, size() + 4096, 4096);
  EXPECT_EQ(contents(), model_);
}

TEST_F(FsFallocate, ZeroRangeZeroesAndGrowsUnlessKeepSize) {
  write(bytes(10 * 4096, 3));
  fs_->fallocate(ino_, FALLOC_FL_ZERO_RANGE, 100, 3 * 4096);
  std::fill(model_.begin() + 100, model_.begin() + 100 + 3 * 4096, 0);
  EXPECT_EQ(contents(), model_);
  fs_->fallocate(ino_, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 9 * 4096, 5 * 4096);
  std::fill(model_.begin() + 9 * 4096, model_.end(), 0);
  EXPECT_EQ(contents(), model_);
  fs_->fallocate(ino_, FALLOC_FL_ZERO_RANGE, 8 * 4096, 30 * 4096 + 5);
  std::fill(model_.begin() + 8 * 4096, model_.end(), 0);
  model_.resize(38 * 4096 + 5, 0);
  EXPECT_EQ(contents(), model_);
  // The new range's backing space is reserved, the holes' included.
  EXPECT_GE(backing_allocated(), 38 * 4096u);
}

TEST_F(FsFallocate, ModeZeroGrowsWithHolesAndReservesTheirSpace) {
  write(bytes(3000, 4));
  fs_->fallocate(ino_, 0, 2000, 100 * 4096);
  model_.resize(2000 + 100 * 4096, 0);
  EXPECT_EQ(contents(), model_);
  EXPECT_GE(backing_allocated(), 100 * 4096u);
  fs_->fallocate(ino_, FALLOC_FL_KEEP_SIZE, 0, 200 * 4096);
  EXPECT_EQ(size(), model_.size());
  EXPECT_GE(backing_allocated(), 200 * 4096u);
  fs_->fallocate(ino_, 0, 0, 10);  // inside: nothing changes
  EXPECT_EQ(contents(), model_);
}

TEST_F(FsFallocate, RandomModesWritesAndTruncatesMatchTheModel) {
  const uint64_t seed = 20261204;
  std::mt19937_64 rng(seed);
  auto pick = [&](uint64_t lo, uint64_t hi) { return std::uniform_int_distribution<uint64_t>(lo, hi)(rng); };
  const int kModes[] = {0, FALLOC_FL_KEEP_SIZE, kPunch, FALLOC_FL_ZERO_RANGE,
                        FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE};
  for (int step = 0; step < 800; ++step) {
    const uint64_t op = pick(0, 9);
    const uint64_t off = pick(0, 2) == 0 ? pick(0, 40) * 4096 : pick(0, model_.size() + 8192);
    const uint64_t len = pick(0, 3) == 0 ? pick(1, 100) : pick(1, 20 * 4096);
    std::string what;
    if (op < 3) {
      what = "write " + std::to_string(off) + "+" + std::to_string(len);
      write(bytes(len, static_cast<uint32_t>(rng())), off);
    } else if (op < 4) {
      const uint64_t to = pick(0, model_.size() + 4096);
      what = "truncate " + std::to_string(to);
      SetAttr a;
      a.size = to;
      fs_->setattr(ino_, a);
      model_.resize(to, 0);
    } else {
      const int mode = kModes[pick(0, 4)];
      what = "fallocate mode " + std::to_string(mode) + " " + std::to_string(off) + "+" + std::to_string(len);
      fs_->fallocate(ino_, mode, off, len);
      const uint64_t end = off + len;
      if (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE))
        std::fill(model_.begin() + static_cast<std::ptrdiff_t>(std::min<uint64_t>(off, model_.size())),
                  model_.begin() + static_cast<std::ptrdiff_t>(std::min<uint64_t>(end, model_.size())), 0);
      if (!(mode & FALLOC_FL_KEEP_SIZE) && end > model_.size()) model_.resize(end, 0);
    }
    ASSERT_EQ(size(), model_.size()) << "seed " << seed << " step " << step << ": " << what;
    ASSERT_TRUE(contents() == model_) << "seed " << seed << " step " << step << ": " << what;
  }
}

}  // namespace
}  // namespace veil::fuse::testing
