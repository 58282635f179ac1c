// Test harness for the mount integration suite: running programs with a timeout, a fresh volume per test group,
// an RAII mount that never leaves a mount behind, a ledger of files that must survive a remount, and a scanner
// that looks for plaintext in the cipher dir.
//
// The binaries under test come from CMake (compile definitions) and can be overridden with the environment
// variables VEILFS_BIN and VEILFS_MKVOL_BIN; temporary volumes go under VEILFS_TEST_TMPDIR (default $TMPDIR or /tmp).
#pragma once

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "veilfs/util/unique_fd.hpp"

namespace veiltest {

using veil::UniqueFd;

// Every plaintext name the tests create contains kNameMarker and every plaintext content contains kContentMarker,
// so that the cipher dir (and the daemon's log) can be searched for them afterwards.
inline constexpr const char* kNameMarker = "veilmark";
inline constexpr const char* kContentMarker = "VEILMARK-PLAINTEXT";

struct RunResult {
  int status = -1;     // exit code; 128 + signal number when killed; -1 when it could not be started
  std::string output;  // stdout and stderr interleaved
  bool timed_out = false;
};

struct RunOptions {
  std::string cwd;
  std::string stdin_data;
  std::chrono::seconds timeout{120};
};

RunResult run(const std::vector<std::string>& argv, const RunOptions& opt = {});
// /bin/sh -c script (with set -e), for the real-program tests.
RunResult sh(const std::string& script, const RunOptions& opt = {});

std::string veilfs_binary();  // empty when the daemon is not built
std::string mkvol_binary();
std::string test_tmpdir();
// Why mount tests cannot run here, or empty when they can.
std::string fuse_unavailable_reason();
void print_loud_skip(const std::string& reason);

bool is_mountpoint(const std::string& path);
// Processes named veilfs whose command line names mnt (a daemon that detached from us).
std::vector<pid_t> find_daemons(const std::string& mnt);
// Waits for a process that is not our child to exit; true when it did.
bool wait_gone(pid_t pid, std::chrono::seconds limit);

// A private directory removed (recursively, without crossing mounts) on destruction.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A cipher dir with a fresh volume, its pass file and an empty mountpoint.
struct VolumeDir {
  explicit VolumeDir(const std::string& prefix, const std::string& passphrase = "correct horse battery veilfs");
  // Creates the volume with the test tool; returns an error message or empty on success.
  std::string create(const std::string& cipher = "");

  TempDir root;
  std::string cipher, mnt, passfile, passphrase;
};

// Unmounts detached daemons' mounts on the way out and waits for their daemons, whatever the test did.
struct DetachedMountGuard {
  std::vector<std::string> mnts;
  ~DetachedMountGuard();
};

// A running `veilfs -f` mounted on a VolumeDir. The destructor unmounts (lazily if it has to) and reaps the
// daemon, so a failing test never leaves a mount behind.
class Mount {
 public:
  // Starts the daemon; check ok() / error() afterwards. max_open_files > 0 caps the daemon's RLIMIT_NOFILE (soft
  // and hard), to prove it copes with more inodes than it may hold descriptors.
  Mount(const VolumeDir& vol, const std::vector<std::string>& extra_args = {}, unsigned long max_open_files = 0);
  ~Mount();
  Mount(const Mount&) = delete;
  Mount& operator=(const Mount&) = delete;

  bool ok() const { return mounted_; }
  const std::string& error() const { return error_; }
  const std::string& path() const { return mnt_; }
  // Unmounts and waits for the daemon; returns an error description (with the daemon's log) or empty.
  std::string unmount();
  // Sends sig to the daemon and waits for it to unmount and exit; returns an error description or empty.
  std::string stop_with_signal(int sig);
  std::string log() const;
  const std::string& log_path() const { return log_path_; }

 private:
  std::string wait_for_exit(std::chrono::seconds limit);

  std::string mnt_, log_path_, error_;
  pid_t pid_ = -1;
  UniqueFd pidfd_;
  bool mounted_ = false;
};

// Files (relative to the mount root) whose exact contents must survive unmount + remount.
class Ledger {
 public:
  void keep(const std::string& rel, std::string content) { files_[rel] = std::move(content); }
  void forget(const std::string& rel) { files_.erase(rel); }
  // Returns one line per mismatch.
  std::vector<std::string> verify(const std::string& mnt) const;
  size_t size() const { return files_.size(); }

 private:
  std::map<std::string, std::string> files_;
};

// Searches every name, file content, symlink target and xattr under dir for any marker. Returns findings.
std::vector<std::string> scan_for_plaintext(const std::string& dir, const std::vector<std::string>& markers);
// Same for one file's contents (the daemon's log).
std::vector<std::string> scan_file_for_plaintext(const std::string& path, const std::vector<std::string>& markers);

// One volume per test group: created and mounted in SetUpTestSuite, and at TearDownTestSuite unmounted,
// remounted, every ledger file verified byte for byte, unmounted again and the cipher dir scanned for plaintext.
class SuiteVolume {
 public:
  SuiteVolume(const std::string& name, std::vector<std::string> mount_args);
  ~SuiteVolume();

  // Non-empty when the group must be skipped (no /dev/fuse, no daemon binary).
  const std::string& skip_reason() const { return skip_; }
  // Non-empty when set-up failed (volume creation or mount).
  const std::string& setup_error() const { return setup_error_; }
  const std::string& mnt() const { return vol_.mnt; }
  bool mounted() const { return mount_ && mount_->ok(); }
  VolumeDir& volume() { return vol_; }
  Ledger& ledger() { return ledger_; }
  void add_marker(const std::string& m) {
    if (std::find(markers_.begin(), markers_.end(), m) == markers_.end()) markers_.push_back(m);
  }

  // Unmount and mount again (no open descriptors may remain). Returns an error or empty; the new mount may be
  // up even when the old daemon's exit was reported as an error (check mounted()).
  std::string remount();
  // The after-it-all checks; reports failures with ADD_FAILURE.
  void finish();

 private:
  std::string name_;
  std::vector<std::string> args_;
  VolumeDir vol_;
  std::unique_ptr<Mount> mount_;
  Ledger ledger_;
  std::vector<std::string> markers_{kNameMarker, kContentMarker};
  std::vector<std::string> logs_;  // daemon logs of every mount of this group, scanned at the end
  std::string skip_, setup_error_;
  bool finished_ = false;
};

// Base fixture: Derived gets its own SuiteVolume (static per Derived), and each test a fresh directory
// `<mnt>/veilmark_<TestName>` so that tests of a group do not see each other's files.
template <typename Derived>
class MountedTest : public ::testing::Test {
 public:
  static void SetUpTestSuite() { suite_ = std::make_unique<SuiteVolume>(Derived::kSuiteName, Derived::mount_args()); }
  static void TearDownTestSuite() {
    if (suite_) suite_->finish();
    suite_.reset();
  }
  static std::vector<std::string> mount_args() { return {}; }

 protected:
  void SetUp() override {
    ASSERT_TRUE(suite_) << "suite set-up did not run";
    if (!suite_->skip_reason().empty()) {
      print_loud_skip(suite_->skip_reason());
      GTEST_SKIP() << suite_->skip_reason();
    }
    ASSERT_TRUE(suite_->setup_error().empty()) << suite_->setup_error();
    dir_ = suite_->mnt() + "/" + kNameMarker + "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name();
    ASSERT_EQ(::mkdir(dir_.c_str(), 0755), 0) << dir_ << ": " << strerror(errno);
  }

  static SuiteVolume& suite() { return *suite_; }
  const std::string& mnt() const { return suite_->mnt(); }
  // This test's own directory on the mount, and a path inside it.
  const std::string& dir() const { return dir_; }
  std::string at(const std::string& rel) const { return dir_ + "/" + rel; }
  // Path relative to the mount root (for the ledger).
  std::string rel(const std::string& name) const { return dir_.substr(mnt().size() + 1) + "/" + name; }

  inline static std::unique_ptr<SuiteVolume> suite_;
  std::string dir_;
};

// ---- file helpers (all return or assert with errno in the message) ----
std::string read_file(const std::string& path);  // throws std::runtime_error
void write_file(const std::string& path, const std::string& content, mode_t mode = 0644);
std::string read_fd_at(int fd, uint64_t off, size_t len);  // short only at EOF
void write_fd_at(int fd, uint64_t off, const std::string& data);
std::string marker_content(size_t n, uint64_t seed);  // deterministic, markers every 64 bytes
std::string random_bytes(size_t n, uint64_t seed);
// Empty when equal, else a short description of the first difference.
std::string first_difference(const std::string& got, const std::string& want);
std::vector<std::string> list_dir(const std::string& path);  // sorted, without . and ..

// errno of a failing call as a readable string for messages.
std::string err_name(int e);

}  // namespace veiltest

// Expects `expr` to fail with -1 and errno == e.
#define EXPECT_ERRNO(expr, e)                                                                      \
  do {                                                                                             \
    errno = 0;                                                                                     \
    auto veiltest_rc_ = (expr);                                                                    \
    int veiltest_err_ = errno;                                                                     \
    EXPECT_EQ(veiltest_rc_, -1) << #expr << " succeeded, expected " << veiltest::err_name(e);      \
    if (veiltest_rc_ == -1) {                                                                      \
      EXPECT_EQ(veiltest_err_, (e)) << #expr << ": expected " << veiltest::err_name(e) << ", got " \
                                    << veiltest::err_name(veiltest_err_);                          \
    }                                                                                              \
  } while (0)

// Expects `expr` to succeed (not return -1).
#define EXPECT_OK(expr)                                                               \
  do {                                                                                \
    errno = 0;                                                                        \
    auto veiltest_rc_ = (expr);                                                       \
    EXPECT_NE(veiltest_rc_, -1) << #expr << " failed: " << veiltest::err_name(errno); \
  } while (0)
#define ASSERT_OK(expr)                                                               \
  do {                                                                                \
    errno = 0;                                                                        \
    auto veiltest_rc_ = (expr);                                                       \
    ASSERT_NE(veiltest_rc_, -1) << #expr << " failed: " << veiltest::err_name(errno); \
  } while (0)

// Skips the current test (from a test body or SetUp), loudly, where mount tests cannot run.
#define VEILTEST_SKIP_WITHOUT_FUSE()                                                                       \
  do {                                                                                                     \
    if (const std::string veiltest_why_ = ::veiltest::fuse_unavailable_reason(); !veiltest_why_.empty()) { \
      ::veiltest::print_loud_skip(veiltest_why_);                                                          \
      GTEST_SKIP() << veiltest_why_;                                                                       \
    }                                                                                                      \
  } while (0)

// For calls that return an error description (empty on success): print it once, not as a diff. Streamable like
// the gtest macros; the switch keeps an enclosing if/else unambiguous (as gtest's own macros do).
#define EXPECT_NO_ERROR(expr)                                          \
  switch (0)                                                           \
  case 0:                                                              \
  default:                                                             \
    if (const std::string veiltest_e_ = (expr); veiltest_e_.empty()) { \
    } else                                                             \
      ADD_FAILURE() << #expr << ":\n" << veiltest_e_ << "\n"
#define ASSERT_NO_ERROR(expr)                                          \
  switch (0)                                                           \
  case 0:                                                              \
  default:                                                             \
    if (const std::string veiltest_e_ = (expr); veiltest_e_.empty()) { \
    } else                                                             \
      FAIL() << #expr << ":\n" << veiltest_e_ << "\n"
