// The command line of the daemon: detaching only once mounted, exit codes, read-only mounts, clean shutdown.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.hpp"

namespace veiltest {
namespace {

class CommandLine : public ::testing::Test {
 protected:
  void SetUp() override { VEILTEST_SKIP_WITHOUT_FUSE(); }
  static RunResult veilfs(const std::vector<std::string>& args) {
    std::vector<std::string> argv{veilfs_binary()};
    argv.insert(argv.end(), args.begin(), args.end());
    RunOptions o;
    o.timeout = std::chrono::seconds(60);
    return run(argv, o);
  }
};

TEST_F(CommandLine, WrongPassphraseExitsWith10AndDoesNotMount) {
  VolumeDir vol("cli-wrongpass");
  ASSERT_NO_ERROR(vol.create());
  std::string wrong = vol.root.path() + "/wrongpass";
  write_file(wrong, "veilmark wrong passphrase\n", 0600);
  DetachedMountGuard guard{{vol.mnt}};
  auto r = veilfs({"--passfile", wrong, vol.cipher, vol.mnt});
  EXPECT_EQ(r.status, 10) << r.output;
  EXPECT_FALSE(is_mountpoint(vol.mnt));
  EXPECT_NE(r.output, "") << "a wrong passphrase deserves a message";
  EXPECT_EQ(r.output.find("veilmark wrong passphrase"), std::string::npos) << "the message must not echo the secret";
  EXPECT_EQ(r.output.find(vol.passphrase), std::string::npos);
  // In the foreground too.
  r = veilfs({"-f", "--passfile", wrong, vol.cipher, vol.mnt});
  EXPECT_EQ(r.status, 10) << r.output;
  EXPECT_FALSE(is_mountpoint(vol.mnt));
}

TEST_F(CommandLine, MissingMountpointExitsWith15AndSaysWhy) {
  VolumeDir vol("cli-nomnt");
  ASSERT_NO_ERROR(vol.create());
  std::string missing = vol.root.path() + "/does-not-exist";
  DetachedMountGuard guard{{missing}};
  auto r = veilfs({"--passfile", vol.passfile, vol.cipher, missing});
  EXPECT_NE(r.status, 0);
  EXPECT_EQ(r.status, 15) << r.output;
  EXPECT_NE(r.output, "") << "a failed mount deserves a message";
  EXPECT_FALSE(is_mountpoint(missing));
  // A regular file is not a mountpoint either.
  std::string file = vol.root.path() + "/a-file";
  write_file(file, "x");
  r = veilfs({"--passfile", vol.passfile, vol.cipher, file});
  EXPECT_EQ(r.status, 15) << r.output;
}

TEST_F(CommandLine, ADirectoryWithoutAVolumeIsRefused) {
  VolumeDir vol("cli-novol");  // cipher dir left empty: no config
  DetachedMountGuard guard{{vol.mnt}};
  auto r = veilfs({"--passfile", vol.passfile, vol.cipher, vol.mnt});
  EXPECT_EQ(r.status, 11) << r.output;
  EXPECT_NE(r.output, "");
  EXPECT_FALSE(is_mountpoint(vol.mnt));
}

TEST_F(CommandLine, BackgroundModeReturnsOnlyWhenTheMountIsUsable) {
  VolumeDir vol("cli-bg");
  ASSERT_NO_ERROR(vol.create());
  std::string content = marker_content(10000, 40);
  {
    Mount m(vol);
    ASSERT_TRUE(m.ok()) << m.error();
    write_file(vol.mnt + "/veilmark_before", content);
    ASSERT_NO_ERROR(m.unmount());
  }
  DetachedMountGuard guard{{vol.mnt}};
  auto r = veilfs({"--passfile", vol.passfile, vol.cipher, vol.mnt});
  ASSERT_EQ(r.status, 0) << r.output;
  // No waiting: when the command has returned, the mount must already answer.
  EXPECT_TRUE(is_mountpoint(vol.mnt));
  EXPECT_EQ(read_file(vol.mnt + "/veilmark_before"), content);
  write_file(vol.mnt + "/veilmark_after", content);
  auto pids = find_daemons(vol.mnt);
  EXPECT_EQ(pids.size(), 1u) << "exactly one detached daemon serves the mount";
  auto u = run({"fusermount3", "-u", vol.mnt});
  ASSERT_EQ(u.status, 0) << u.output;
  for (pid_t p : pids) EXPECT_TRUE(wait_gone(p, std::chrono::seconds(20))) << "the daemon must exit after unmount";
  Mount again(vol);
  ASSERT_TRUE(again.ok()) << again.error();
  EXPECT_EQ(read_file(vol.mnt + "/veilmark_after"), content);
}

TEST_F(CommandLine, ReadOnlyMountRefusesEveryChange) {
  VolumeDir vol("cli-ro");
  ASSERT_NO_ERROR(vol.create());
  {
    Mount m(vol);
    ASSERT_TRUE(m.ok()) << m.error();
    write_file(vol.mnt + "/veilmark_file", "read me");
    ASSERT_EQ(::mkdir((vol.mnt + "/d").c_str(), 0755), 0);
    ASSERT_NO_ERROR(m.unmount());
  }
  Mount m(vol, {"--ro"});
  ASSERT_TRUE(m.ok()) << m.error();
  EXPECT_EQ(read_file(vol.mnt + "/veilmark_file"), "read me");
  EXPECT_ERRNO(::open((vol.mnt + "/veilmark_file").c_str(), O_WRONLY), EROFS);
  EXPECT_ERRNO(::open((vol.mnt + "/new").c_str(), O_CREAT | O_WRONLY, 0644), EROFS);
  EXPECT_ERRNO(::mkdir((vol.mnt + "/d2").c_str(), 0755), EROFS);
  EXPECT_ERRNO(::unlink((vol.mnt + "/veilmark_file").c_str()), EROFS);
  EXPECT_ERRNO(::rmdir((vol.mnt + "/d").c_str()), EROFS);
  EXPECT_ERRNO(::truncate((vol.mnt + "/veilmark_file").c_str(), 0), EROFS);
  EXPECT_ERRNO(::chmod((vol.mnt + "/veilmark_file").c_str(), 0600), EROFS);
  EXPECT_EQ(read_file(vol.mnt + "/veilmark_file"), "read me");
}

TEST_F(CommandLine, SigtermAndSigintUnmountCleanlyWithAllDataWritten) {
  VolumeDir vol("cli-signal");
  ASSERT_NO_ERROR(vol.create());
  std::string content = marker_content(300000, 41);
  for (int sig : {SIGTERM, SIGINT}) {
    Mount m(vol);
    ASSERT_TRUE(m.ok()) << m.error();
    write_file(vol.mnt + "/veilmark_" + std::to_string(sig), content);
    EXPECT_NO_ERROR(m.stop_with_signal(sig)) << "signal " << sig;
    EXPECT_FALSE(is_mountpoint(vol.mnt));
  }
  Mount m(vol);
  ASSERT_TRUE(m.ok()) << m.error();
  for (int sig : {SIGTERM, SIGINT}) EXPECT_EQ(read_file(vol.mnt + "/veilmark_" + std::to_string(sig)), content);
}

TEST_F(CommandLine, MountsThroughMountFuse3WithAPassfileOption) {
  // What /etc/fstab does. `-t fuse.veilfs` needs veilfs installed in the system PATH, so the "type#source" form of
  // mount.fuse3 names this build's binary instead; the option parsing and detaching are the same.
  if (::geteuid() != 0) GTEST_SKIP() << "mount(8) needs root";
  if (::access("/sbin/mount.fuse3", X_OK) != 0 && ::access("/usr/sbin/mount.fuse3", X_OK) != 0)
    GTEST_SKIP() << "mount.fuse3 is not installed";
  VolumeDir vol("cli-mount8");
  ASSERT_NO_ERROR(vol.create());
  DetachedMountGuard guard{{vol.mnt}};
  auto r = run({"mount", "-t", "fuse", "-o", "passfile=" + vol.passfile + ",noatime",
                veilfs_binary() + "#" + vol.cipher, vol.mnt});
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(is_mountpoint(vol.mnt));
  write_file(vol.mnt + "/veilmark_via_mount8", "through mount(8)");
  EXPECT_EQ(read_file(vol.mnt + "/veilmark_via_mount8"), "through mount(8)");
  auto pids = find_daemons(vol.mnt);
  auto u = run({"umount", vol.mnt});
  EXPECT_EQ(u.status, 0) << u.output;
  for (pid_t p : pids) EXPECT_TRUE(wait_gone(p, std::chrono::seconds(20)));
  Mount m(vol);
  ASSERT_TRUE(m.ok()) << m.error();
  EXPECT_EQ(read_file(vol.mnt + "/veilmark_via_mount8"), "through mount(8)");
}

TEST_F(CommandLine, PassphraseFromExtpassAndFromStdin) {
  VolumeDir vol("cli-secret");
  ASSERT_NO_ERROR(vol.create());
  {
    DetachedMountGuard guard{{vol.mnt}};
    auto r = veilfs({"--extpass", "cat '" + vol.passfile + "'", vol.cipher, vol.mnt});
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_TRUE(is_mountpoint(vol.mnt));
    write_file(vol.mnt + "/veilmark_extpass", "x");
  }
  EXPECT_FALSE(is_mountpoint(vol.mnt));
  {
    DetachedMountGuard guard{{vol.mnt}};
    RunOptions o;
    o.stdin_data = vol.passphrase + "\n";
    o.timeout = std::chrono::seconds(60);
    auto r = run({veilfs_binary(), vol.cipher, vol.mnt}, o);
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_EQ(read_file(vol.mnt + "/veilmark_extpass"), "x");
  }
  RunOptions o;
  o.stdin_data = "not the passphrase\n";
  DetachedMountGuard guard{{vol.mnt}};
  auto r = run({veilfs_binary(), vol.cipher, vol.mnt}, o);
  EXPECT_EQ(r.status, 10) << r.output;
  EXPECT_FALSE(is_mountpoint(vol.mnt));
}

TEST_F(CommandLine, HelpAndVersionExitZeroAndBadOptionsExitTwo) {
  auto r = veilfs({"--help"});
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("MOUNTPOINT"), std::string::npos);
  r = veilfs({"--version"});
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output, "");
  r = veilfs({"--no-such-option", "a", "b"});
  EXPECT_EQ(r.status, 2) << r.output;
  r = veilfs({"only-one-argument"});
  EXPECT_EQ(r.status, 2) << r.output;
}

TEST_F(CommandLine, BothCiphersMountAndLeakNothing) {
  for (const char* cipher : {"xchacha20poly1305", "aes256gcm"}) {
    VolumeDir vol(std::string("cli-") + cipher);
    ASSERT_NO_ERROR(vol.create(cipher));
    std::string content = marker_content(50000, 42);
    {
      Mount m(vol);
      ASSERT_TRUE(m.ok()) << cipher << ": " << m.error();
      ASSERT_EQ(::mkdir((vol.mnt + "/veilmark_dir").c_str(), 0755), 0);
      write_file(vol.mnt + "/veilmark_dir/veilmark_file", content);
      ASSERT_NO_ERROR(m.unmount());
    }
    {
      Mount m(vol);
      ASSERT_TRUE(m.ok()) << m.error();
      EXPECT_EQ(read_file(vol.mnt + "/veilmark_dir/veilmark_file"), content) << cipher;
      ASSERT_NO_ERROR(m.unmount());
    }
    auto leaks = scan_for_plaintext(vol.cipher, {kNameMarker, kContentMarker});
    EXPECT_TRUE(leaks.empty()) << cipher << ": " << leaks.front();
  }
}

}  // namespace
}  // namespace veiltest
