// --shared-storage: two mounts of one cipher dir (as two machines over sshfs, or a mount and a sync client)
// see each other's changes within a second: new names, sizes, contents, modes and deletions, also for a file
// the other replaced with new contents (a new header and key) while this one had it cached.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include "harness.hpp"

namespace veiltest {
namespace {

using Clock = std::chrono::steady_clock;

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return in ? s.str() : std::string("<unreadable>");
}

void put(const std::string& path, const std::string& data, std::ios::openmode mode = std::ios::trunc) {
  std::ofstream out(path, std::ios::binary | mode);
  out << data;
}

// Polls `seen` until it holds or `limit` has passed since `since` (the moment the change was complete); returns
// how long it took. Polling with a deadline, not a sleep: the point is the bound.
double until(const std::function<bool()>& seen, Clock::time_point since, std::chrono::milliseconds limit) {
  while (!seen()) {
    if (Clock::now() - since > limit) return -1;
    ::usleep(20 * 1000);
  }
  return std::chrono::duration<double>(Clock::now() - since).count();
}

class SharedStorage : public ::testing::Test {
 protected:
  void SetUp() override {
    VEILTEST_SKIP_WITHOUT_FUSE();
    ASSERT_EQ(a_.create(), "");
    // The second "machine": the same cipher dir and passphrase, its own mountpoint.
    b_.cipher = a_.cipher;
    b_.passfile = a_.passfile;
    ma_ = std::make_unique<Mount>(a_, std::vector<std::string>{"--shared-storage"});
    ASSERT_TRUE(ma_->ok()) << ma_->error();
    mb_ = std::make_unique<Mount>(b_, std::vector<std::string>{"-o", "shared_storage"});
    ASSERT_TRUE(mb_->ok()) << mb_->error();
  }
  std::string A(const std::string& rel) { return a_.mnt + "/" + rel; }
  std::string B(const std::string& rel) { return b_.mnt + "/" + rel; }

  VolumeDir a_{"shared-a"}, b_{"shared-b"};
  std::unique_ptr<Mount> ma_, mb_;
  const std::chrono::milliseconds kWithin{1000};
};

TEST_F(SharedStorage, ChangesMadeThroughOneMountShowInTheOtherWithinASecond) {
  put(A("f"), "first version");
  EXPECT_EQ(slurp(B("f")), "first version");  // B now caches its entry, attributes and pages

  // An append through B: A sees the new size and contents.
  put(B("f"), " and more", std::ios::app);
  auto t = Clock::now();
  double s = until([&] { return slurp(A("f")) == "first version and more"; }, t, kWithin);
  EXPECT_GE(s, 0) << "A still shows: " << slurp(A("f"));

  // Replaced through A with new contents (truncate to 0: a new header, file ID and key): B reads the new ones.
  EXPECT_EQ(slurp(B("f")), "first version and more");
  put(A("f"), "replaced");
  t = Clock::now();
  EXPECT_GE(until([&] { return slurp(B("f")) == "replaced"; }, t, kWithin), 0) << "B shows: " << slurp(B("f"));

  // A new name, a mode, a deletion.
  put(B("new"), "hello");
  ASSERT_EQ(::chmod(B("f").c_str(), 0640), 0);
  t = Clock::now();
  EXPECT_GE(until([&] { return slurp(A("new")) == "hello"; }, t, kWithin), 0);
  EXPECT_GE(until(
                [&] {
                  struct stat st;
                  return ::stat(A("f").c_str(), &st) == 0 && (st.st_mode & 07777) == 0640;
                },
                t, kWithin),
            0);
  ASSERT_EQ(::unlink(A("new").c_str()), 0);
  t = Clock::now();
  EXPECT_GE(until([&] { return !std::filesystem::exists(B("new")); }, t, kWithin), 0);

  // Directories and renames.
  ASSERT_EQ(::mkdir(A("d").c_str(), 0755), 0);
  put(A("d/x"), "x");
  t = Clock::now();
  EXPECT_GE(until([&] { return slurp(B("d/x")) == "x"; }, t, kWithin), 0);
  ASSERT_EQ(::rename(B("d").c_str(), B("e").c_str()), 0);
  t = Clock::now();
  EXPECT_GE(until([&] { return slurp(A("e/x")) == "x" && !std::filesystem::exists(A("d")); }, t, kWithin), 0);

  EXPECT_EQ(ma_->unmount(), "");
  EXPECT_EQ(mb_->unmount(), "");
}

}  // namespace
}  // namespace veiltest
