// Permissions as a multi-user system sees them: mounted as root with --allow-other, the kernel enforces modes
// (default_permissions) and new files belong to whoever created them.
#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>

#include "harness.hpp"

namespace veiltest {
namespace {

constexpr uid_t kNobody = 65534;
constexpr gid_t kNogroup = 65534;

class Permissions : public MountedTest<Permissions> {
 public:
  static constexpr const char* kSuiteName = "Permissions";
  static std::vector<std::string> mount_args() { return {"--allow-other"}; }

 protected:
  void SetUp() override {
    if (::geteuid() != 0) {
      print_loud_skip("the permission tests need root (mount with --allow-other, then switch users)");
      GTEST_SKIP() << "not root";
    }
    MountedTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    // The mount root shows the cipher dir's mode (0700): open it up as an administrator would.
    ASSERT_EQ(::chmod(mnt().c_str(), 0755), 0);
    ASSERT_EQ(::chmod(dir().c_str(), 0777), 0);
  }

  // Runs body in a child process as uid/gid 65534 and returns what it returned (an errno, or 0 for success).
  static int as_nobody(const std::function<int()>& body) {
    pid_t pid = ::fork();
    if (pid < 0) return -1;
    if (pid == 0) {
      if (::setgroups(0, nullptr) != 0 || ::setresgid(kNogroup, kNogroup, kNogroup) != 0 ||
          ::setresuid(kNobody, kNobody, kNobody) != 0)
        _exit(200);
      _exit(body());
    }
    int st = 0;
    ::waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 300;
  }
  static int errno_of(int rc) { return rc < 0 ? errno : 0; }
};

TEST_F(Permissions, UnprivilegedUserCannotReadAPrivateFile) {
  write_file(at("private"), std::string(kContentMarker) + " secret", 0600);
  int r = as_nobody([&] { return errno_of(::open(at("private").c_str(), O_RDONLY)); });
  EXPECT_EQ(r, EACCES) << "uid 65534 opening a 0600 root file: expected EACCES, got " << err_name(r);
  r = as_nobody([&] { return errno_of(::open(at("private").c_str(), O_WRONLY)); });
  EXPECT_EQ(r, EACCES) << "opening for writing: got " << err_name(r);
  r = as_nobody([&] { return errno_of(::truncate(at("private").c_str(), 0)); });
  EXPECT_EQ(r, EACCES) << "truncate: got " << err_name(r);
  EXPECT_EQ(read_file(at("private")), std::string(kContentMarker) + " secret");
}

TEST_F(Permissions, UnprivilegedUserCanReadAWorldReadableFile) {
  // The control for the test above: the same user reaches the mount and reads what the mode allows.
  write_file(at("public"), "for everyone", 0644);
  int r = as_nobody([&] {
    try {
      return read_file(at("public")) == "for everyone" ? 0 : 99;
    } catch (...) {
      return errno ? errno : 98;
    }
  });
  EXPECT_EQ(r, 0) << "uid 65534 reading a 0644 file: " << err_name(r);
  r = as_nobody([&] { return errno_of(::open(at("public").c_str(), O_WRONLY)); });
  EXPECT_EQ(r, EACCES) << "but not writing it: got " << err_name(r);
}

TEST_F(Permissions, UnprivilegedUserCannotCreateInAForeignDirectory) {
  ASSERT_EQ(::mkdir(at("rootonly").c_str(), 0755), 0);
  int r = as_nobody([&] { return errno_of(::open(at("rootonly/f").c_str(), O_CREAT | O_WRONLY, 0644)); });
  EXPECT_EQ(r, EACCES) << "creating in a 0755 root directory: got " << err_name(r);
  r = as_nobody([&] { return errno_of(::mkdir(at("rootonly/d").c_str(), 0755)); });
  EXPECT_EQ(r, EACCES) << "mkdir: got " << err_name(r);
  ASSERT_EQ(::mkdir(at("locked").c_str(), 0700), 0);
  write_file(at("locked/inside"), "x", 0644);
  r = as_nobody([&] {
    struct stat st {};
    return errno_of(::stat(at("locked/inside").c_str(), &st));
  });
  EXPECT_EQ(r, EACCES) << "looking up through a 0700 root directory: got " << err_name(r);
  r = as_nobody([&] { return errno_of(::chmod(at("locked").c_str(), 0777)); });
  EXPECT_EQ(r, EPERM) << "chmod of another user's directory: got " << err_name(r);
}

TEST_F(Permissions, NewFilesBelongToTheCallingUserAndGroup) {
  int r = as_nobody([&] {
    if (::mkdir(at("mine").c_str(), 0750) != 0) return errno;
    int fd = ::open(at("mine/file").c_str(), O_CREAT | O_WRONLY, 0640);
    if (fd < 0) return errno;
    ::close(fd);
    if (::symlink("file", at("mine/link").c_str()) != 0) return errno;
    if (::mkfifo(at("mine/fifo").c_str(), 0600) != 0) return errno;
    return 0;
  });
  ASSERT_EQ(r, 0) << err_name(r);
  for (const char* n : {"mine", "mine/file", "mine/link", "mine/fifo"}) {
    struct stat st {};
    ASSERT_EQ(::lstat(at(n).c_str(), &st), 0) << n;
    EXPECT_EQ(st.st_uid, kNobody) << n << " must belong to its creator, not to the daemon";
    EXPECT_EQ(st.st_gid, kNogroup) << n;
  }
  struct stat st {};
  ASSERT_EQ(::lstat(at("mine").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0750u);
  // The owner may then use its own private files; root is not needed.
  r = as_nobody([&] { return errno_of(::open(at("mine/file").c_str(), O_RDWR)); });
  EXPECT_EQ(r, 0) << err_name(r);
}

TEST_F(Permissions, SetgidDirectoryPassesItsGroupOn) {
  ASSERT_EQ(::mkdir(at("shared").c_str(), 02777), 0);
  ASSERT_EQ(::chown(at("shared").c_str(), 0, 4242), 0);
  ASSERT_EQ(::chmod(at("shared").c_str(), 02777), 0);
  int r = as_nobody([&] {
    int fd = ::open(at("shared/f").c_str(), O_CREAT | O_WRONLY, 0644);
    if (fd < 0) return errno;
    ::close(fd);
    return 0;
  });
  ASSERT_EQ(r, 0) << err_name(r);
  struct stat st {};
  ASSERT_EQ(::lstat(at("shared/f").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, kNobody);
  EXPECT_EQ(st.st_gid, 4242u) << "a file in a setgid directory takes the directory's group";
  r = as_nobody([&] { return errno_of(::mkdir(at("shared/sub").c_str(), 0777)); });
  ASSERT_EQ(r, 0) << err_name(r);
  ASSERT_EQ(::lstat(at("shared/sub").c_str(), &st), 0);
  EXPECT_EQ(st.st_gid, 4242u) << "a directory in a setgid directory takes its group";
  EXPECT_TRUE(st.st_mode & S_ISGID) << "and its setgid bit";
  EXPECT_EQ(st.st_uid, kNobody);
}

TEST_F(Permissions, WriteByAnotherUserClearsSetuidAndSetgid) {
  write_file(at("suid"), "#!/bin/sh\n", 0644);
  ASSERT_EQ(::chmod(at("suid").c_str(), 06777), 0);
  int r = as_nobody([&] {
    int fd = ::open(at("suid").c_str(), O_WRONLY | O_APPEND);
    if (fd < 0) return errno;
    int rc = ::write(fd, "x", 1) == 1 ? 0 : errno;
    ::close(fd);
    return rc;
  });
  ASSERT_EQ(r, 0) << err_name(r);
  struct stat st {};
  ASSERT_EQ(::lstat(at("suid").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0777u) << "a write by a non-owner must drop setuid/setgid (as ext4 does), got 0"
                                       << std::oct << (st.st_mode & 07777);
}

// xfstests generic/683 and its siblings: a write, an fallocate or a truncate by a user who neither owns the file
// nor is in its group clears setuid and setgid, whether the group may execute or not (as on ext4); by root they
// stay. (The kernel's FUSE fallback alone kept setgid on a file the group cannot execute.)
TEST_F(Permissions, WriteFallocateAndTruncateByAnOutsiderClearSetIdBitsAsOnALocalDisk) {
  struct Case {
    mode_t before, after;
  };
  const Case cases[] = {{06666, 0666}, {06676, 0676}, {06766, 0766}, {06777, 0777}, {02676, 0676}, {02777, 0777}};
  const std::pair<const char*, std::function<int(int)>> ops[] = {
      {"write", [](int fd) { return ::pwrite(fd, "x", 1, 4096) == 1 ? 0 : errno; }},
      {"fallocate", [](int fd) { return ::fallocate(fd, 0, 0, 65536) == 0 ? 0 : errno; }},
      {"ftruncate", [](int fd) { return ::ftruncate(fd, 100) == 0 ? 0 : errno; }},
  };
  for (const auto& [op, body] : ops) {
    for (const Case& c : cases) {
      write_file(at("setid"), std::string(8192, 'X'), 0644);
      ASSERT_EQ(::chmod(at("setid").c_str(), c.before), 0);
      int r = as_nobody([&] {
        int fd = ::open(at("setid").c_str(), O_WRONLY);
        if (fd < 0) return errno;
        int rc = body(fd);
        ::close(fd);
        return rc;
      });
      ASSERT_EQ(r, 0) << op << ": " << err_name(r);
      struct stat st {};
      ASSERT_EQ(::lstat(at("setid").c_str(), &st), 0);
      EXPECT_EQ(st.st_mode & 07777, c.after)
          << op << " by nobody on 0" << std::oct << c.before << " gave 0" << (st.st_mode & 07777);
      // Root keeps them.
      UniqueFd fd(::open(at("setid").c_str(), O_WRONLY | O_CLOEXEC));
      ASSERT_EQ(::chmod(at("setid").c_str(), c.before), 0);
      ASSERT_EQ(body(fd.get()), 0) << op;
      fd = UniqueFd();
      ASSERT_EQ(::lstat(at("setid").c_str(), &st), 0);
      EXPECT_EQ(st.st_mode & 07777, c.before) << op << " by root on 0" << std::oct << c.before;
    }
  }
}

TEST_F(Permissions, OwnersMayChmodButNotChownAndModesBindThemToo) {
  int r = as_nobody([&] {
    int fd = ::open(at("own").c_str(), O_CREAT | O_WRONLY, 0644);
    if (fd < 0) return errno;
    ::close(fd);
    if (::chmod(at("own").c_str(), 0444) != 0) return errno;
    return 0;
  });
  ASSERT_EQ(r, 0) << err_name(r);
  r = as_nobody([&] { return errno_of(::open(at("own").c_str(), O_WRONLY)); });
  EXPECT_EQ(r, EACCES) << "the owner writing a 0444 file: got " << err_name(r);
  r = as_nobody([&] { return errno_of(::chown(at("own").c_str(), 0, 0)); });
  EXPECT_EQ(r, EPERM) << "giving a file away: got " << err_name(r);
  r = as_nobody([&] {
    struct timespec ts[2] = {{1, 0}, {2, 0}};
    return errno_of(::utimensat(AT_FDCWD, at("own").c_str(), ts, 0));
  });
  EXPECT_EQ(r, 0) << "the owner setting its own times: " << err_name(r);
  write_file(at("roots"), "x", 0666);
  r = as_nobody([&] {
    struct timespec ts[2] = {{1, 0}, {2, 0}};
    return errno_of(::utimensat(AT_FDCWD, at("roots").c_str(), ts, 0));
  });
  EXPECT_EQ(r, EPERM) << "setting explicit times on another user's file: got " << err_name(r);
}

}  // namespace
}  // namespace veiltest
