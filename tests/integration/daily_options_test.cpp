// The mount's daily options (issue 15, item 4): a config kept outside the cipher dir (--config), mounting with
// the recovery code when the config is lost (--recovery-code-file), unmounting when idle (--idle, never while
// the mount is in use), and where messages go (--logfile, --syslog, --no-syslog). Real daemons, detached as a
// user runs them.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "harness.hpp"
#include "veilfs/format/recovery_code.hpp"
#include "veilfs/volume.hpp"

namespace veiltest {
namespace {

using namespace std::chrono_literals;

class DailyOptions : public ::testing::Test {
 protected:
  void SetUp() override { VEILTEST_SKIP_WITHOUT_FUSE(); }
  static RunResult veilfs(const std::vector<std::string>& args) {
    std::vector<std::string> argv{veilfs_binary()};
    argv.insert(argv.end(), args.begin(), args.end());
    RunOptions o;
    o.timeout = std::chrono::seconds(60);
    return run(argv, o);
  }
  // A volume made through the library with a cheap KDF; returns its recovery code.
  static std::string create(const VolumeDir& vol, const std::string& config_file = {}) {
    veil::CreateOptions opt;
    opt.kdf = {1, 1u << 16};
    opt.config_file = config_file;
    const std::string pass = read_file(vol.passfile);
    veil::SecretBytes master =
        veil::Volume::create(vol.cipher, {reinterpret_cast<const uint8_t*>(pass.data()), pass.find('\n')}, opt);
    veil::SecretBytes code = veil::format::encode_recovery_code(master);
    return std::string(code.view());
  }
  static std::vector<std::string> names_in(const std::string& dir) { return list_dir(dir); }
};

// Polls a condition that another process makes true (the daemon's own log, its unmount); false on timeout.
template <class F>
bool eventually(F&& cond, std::chrono::seconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(50ms);
  }
  return cond();
}

bool file_contains(const std::string& path, const std::string& what) {
  try {
    return read_file(path).find(what) != std::string::npos;
  } catch (const std::exception&) {
    return false;
  }
}

TEST_F(DailyOptions, AConfigKeptOutsideTheCipherDirMountsChecksAndTranslates) {
  VolumeDir vol("daily-config");
  const std::string conf = vol.root.path() + "/vault.conf";
  create(vol, conf);
  // The cipher dir holds no key slot: what a sync service uploads cannot be attacked offline.
  EXPECT_EQ(names_in(vol.cipher), (std::vector<std::string>{"veilfs.diriv", "veilfs.params"}));
  EXPECT_EQ(read_file(vol.cipher + "/veilfs.params").find("key_slots"), std::string::npos);
  EXPECT_NE(read_file(conf).find("key_slots"), std::string::npos);

  // Without --config: exit 11 and a message that says where the config went.
  DetachedMountGuard guard{{vol.mnt}};
  auto r = veilfs({"--passfile", vol.passfile, vol.cipher, vol.mnt});
  EXPECT_EQ(r.status, 11) << r.output;
  EXPECT_NE(r.output.find("--config"), std::string::npos) << r.output;
  EXPECT_FALSE(is_mountpoint(vol.mnt));
  // A --config that does not exist is named.
  r = veilfs({"--config", conf + ".nope", "--passfile", vol.passfile, vol.cipher, vol.mnt});
  EXPECT_EQ(r.status, 11) << r.output;
  EXPECT_NE(r.output.find(conf + ".nope"), std::string::npos) << r.output;

  {
    Mount m(vol, {"--config", conf});
    ASSERT_TRUE(m.ok()) << m.error();
    write_file(vol.mnt + "/veilmark_file", "through an external config\n");
    ASSERT_NO_ERROR(m.unmount());
  }
  {
    Mount m(vol, {"-o", "config=" + conf});  // the fstab spelling
    ASSERT_TRUE(m.ok()) << m.error();
    EXPECT_EQ(read_file(vol.mnt + "/veilmark_file"), "through an external config\n");
    ASSERT_NO_ERROR(m.unmount());
  }
  EXPECT_EQ(names_in(vol.cipher).size(), 3u) << "the file, the IV and the params file; still no config";

  r = veilfs({"fsck", "--config", conf, "--passfile", vol.passfile, vol.cipher});
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("clean"), std::string::npos) << r.output;
  r = veilfs({"xray", "--to-cipher", "--config", conf, "--passfile", vol.passfile, vol.cipher, "/veilmark_file"});
  EXPECT_EQ(r.status, 0) << r.output;
  std::string backing;
  for (const auto& n : names_in(vol.cipher))
    if (n.rfind("veilfs.", 0) != 0) backing = n;
  EXPECT_NE(r.output.find(backing), std::string::npos) << r.output;
}

TEST_F(DailyOptions, TheRecoveryCodeMountsAVolumeWhoseConfigIsLost) {
  VolumeDir vol("daily-recovery");
  const std::string code = create(vol);
  {
    Mount m(vol);
    ASSERT_TRUE(m.ok()) << m.error();
    write_file(vol.mnt + "/veilmark_kept", "kept through the loss of the config\n");
    ASSERT_NO_ERROR(m.unmount());
  }
  const std::string code_file = vol.root.path() + "/code.txt";
  write_file(code_file, code + "\n", 0600);
  DetachedMountGuard guard{{vol.mnt}};
  // With the config there: the code opens it too.
  auto r = veilfs({"--recovery-code-file", code_file, vol.cipher, vol.mnt});
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(read_file(vol.mnt + "/veilmark_kept"), "kept through the loss of the config\n");
  ASSERT_EQ(run({"fusermount3", "-u", vol.mnt}).status, 0);
  ASSERT_TRUE(eventually([&] { return find_daemons(vol.mnt).empty(); }, 20s));

  std::filesystem::remove(vol.cipher + "/veilfs.conf");
  r = veilfs({"--passfile", vol.passfile, vol.cipher, vol.mnt});
  EXPECT_EQ(r.status, 11) << r.output;
  EXPECT_NE(r.output.find("recovery code"), std::string::npos) << "the message names the way out: " << r.output;

  // From standard input, as a person pastes it (lower case, no dashes).
  std::string sloppy;
  for (char c : code)
    if (c != '-') sloppy += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  RunOptions o;
  o.timeout = 60s;
  o.stdin_data = sloppy + "\n";
  r = run({veilfs_binary(), "--recovery-code", vol.cipher, vol.mnt}, o);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(read_file(vol.mnt + "/veilmark_kept"), "kept through the loss of the config\n");
  write_file(vol.mnt + "/veilmark_new", "written while the config was lost\n");
  ASSERT_EQ(run({"fusermount3", "-u", vol.mnt}).status, 0);
  ASSERT_TRUE(eventually([&] { return find_daemons(vol.mnt).empty(); }, 20s));
  EXPECT_FALSE(std::filesystem::exists(vol.cipher + "/veilfs.conf")) << "mounting does not write a config";

  // A typo: exit 17, its group named; the code of another volume: exit 10. Neither mounts.
  std::string typo = code;
  typo[9] = typo[9] == '7' ? '8' : '7';
  write_file(code_file, typo + "\n", 0600);
  r = veilfs({"--recovery-code-file", code_file, vol.cipher, vol.mnt});
  EXPECT_EQ(r.status, 17) << r.output;
  EXPECT_NE(r.output.find("group 2"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find(code.substr(8, 7)), std::string::npos) << "the code is never echoed";
  VolumeDir other("daily-recovery-other");
  write_file(code_file, create(other) + "\n", 0600);
  r = veilfs({"--recovery-code-file", code_file, vol.cipher, vol.mnt});
  EXPECT_EQ(r.status, 10) << r.output;
  EXPECT_FALSE(is_mountpoint(vol.mnt));
  // One secret at a time.
  r = veilfs({"--recovery-code-file", code_file, "--passfile", vol.passfile, vol.cipher, vol.mnt});
  EXPECT_EQ(r.status, 2) << r.output;
}

TEST_F(DailyOptions, IdleUnmountsOnlyOnceNothingUsesTheMount) {
  VolumeDir vol("daily-idle");
  create(vol);
  const std::string log = vol.root.path() + "/veilfs.log";
  DetachedMountGuard guard{{vol.mnt}};
  auto r = veilfs({"--passfile", vol.passfile, "--idle", "1s", "--logfile", log, vol.cipher, vol.mnt});
  ASSERT_EQ(r.status, 0) << r.output;
  const auto pids = find_daemons(vol.mnt);
  ASSERT_EQ(pids.size(), 1u);
  write_file(vol.mnt + "/veilmark_open", "held open\n");
  {
    UniqueFd held(::open((vol.mnt + "/veilmark_open").c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(held) << err_name(errno);
    // The daemon says when it found the mount idle but in use: that is the moment to look.
    ASSERT_TRUE(eventually([&] { return file_contains(log, "staying mounted"); }, 30s)) << read_file(log);
    EXPECT_TRUE(is_mountpoint(vol.mnt)) << "an open file keeps the mount";
    EXPECT_EQ(read_fd_at(held.get(), 0, 100), "held open\n");
  }
  // Closed: the next idle period unmounts, after writing everything back; the daemon exits.
  ASSERT_TRUE(eventually([&] { return !is_mountpoint(vol.mnt); }, 30s)) << read_file(log);
  for (pid_t p : pids) EXPECT_TRUE(wait_gone(p, 20s));
  EXPECT_TRUE(file_contains(log, "unmounted")) << read_file(log);
  Mount again(vol);
  ASSERT_TRUE(again.ok()) << again.error();
  EXPECT_EQ(read_file(vol.mnt + "/veilmark_open"), "held open\n");

  // Durations: forms that are refused before the passphrase is read.
  for (const char* bad : {"0", "500ms", "5x", "1h-1", "", "99999999999"}) {
    r = veilfs({"--passfile", vol.passfile, "--idle", bad, vol.cipher, vol.root.path()});
    EXPECT_EQ(r.status, 2) << bad << ": " << r.output;
  }
}

TEST_F(DailyOptions, LogfileSyslogAndNoSyslogSayWhereMessagesGo) {
  VolumeDir vol("daily-log");
  create(vol);
  const std::string log = vol.root.path() + "/veilfs.log";
  {
    // A foreground daemon writes to the log file too; a signal's shutdown is logged there.
    Mount m(vol, {"--logfile", log});
    ASSERT_TRUE(m.ok()) << m.error();
    ASSERT_NO_ERROR(m.stop_with_signal(SIGTERM));
  }
  EXPECT_TRUE(file_contains(log, "writing back and unmounting")) << read_file(log);
  struct stat st {};
  ASSERT_EQ(::stat(log.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u) << "the log is the user's alone";
  // Lines carry a UTC time stamp and the daemon's pid.
  EXPECT_NE(read_file(log).find("Z veilfs["), std::string::npos) << read_file(log);

  auto r = veilfs({"--passfile", vol.passfile, "--syslog", "--no-syslog", vol.cipher, vol.mnt});
  EXPECT_EQ(r.status, 2) << r.output;
  r = veilfs({"--passfile", vol.passfile, "--logfile", vol.root.path() + "/no/such/dir/log", vol.cipher, vol.mnt});
  EXPECT_EQ(r.status, 14) << r.output;
  EXPECT_NE(r.output.find("cannot open the log file: No such file or directory"), std::string::npos) << r.output;
  EXPECT_FALSE(is_mountpoint(vol.mnt));

  // Detached with --no-syslog and no log file: mounts and serves all the same.
  DetachedMountGuard guard{{vol.mnt}};
  r = veilfs({"--passfile", vol.passfile, "--no-syslog", vol.cipher, vol.mnt});
  ASSERT_EQ(r.status, 0) << r.output;
  write_file(vol.mnt + "/veilmark_quiet", "quiet\n");
  EXPECT_EQ(read_file(vol.mnt + "/veilmark_quiet"), "quiet\n");
}

// `mount -o remount,ro MOUNTPOINT` reaches veilfs (through mount.fuse3) as -o remount,ro: the live mount turns
// read-only and back (xfstests generic/452, 294, 306), keeping its other flags, without a secret or a new daemon.
TEST_F(DailyOptions, RemountTurnsALiveMountReadOnlyAndBack) {
  if (::geteuid() != 0) GTEST_SKIP() << "!!! SKIPPED: remounting needs root";
  VolumeDir vol("daily-remount");
  create(vol);
  Mount m(vol);
  ASSERT_TRUE(m.ok()) << m.error();
  write_file(vol.mnt + "/veilmark_before", "before\n");
  auto flags_of = [&] {
    for (const auto& line : [] {
           std::vector<std::string> v;
           std::ifstream in("/proc/self/mountinfo");
           for (std::string l; std::getline(in, l);) v.push_back(l);
           return v;
         }())
      if (line.find(" " + vol.mnt + " ") != std::string::npos) return line.substr(0, line.find(" - "));
    return std::string();
  };
  const std::string before = flags_of();
  ASSERT_NE(before.find(" rw,"), std::string::npos) << before;

  // No passphrase is read (stdin is empty, no secret option): only the flag changes.
  auto r = veilfs({"-o", "rw,remount,ro", vol.cipher, vol.mnt});
  ASSERT_EQ(r.status, 0) << r.output;
  std::string now = flags_of();
  EXPECT_NE(now.find(" ro,"), std::string::npos) << now;
  for (const char* kept : {"nosuid", "nodev", "noexec"})
    EXPECT_EQ(before.find(kept) == std::string::npos, now.find(kept) == std::string::npos) << kept << ": " << now;
  EXPECT_EQ(::open((vol.mnt + "/veilmark_new").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(read_file(vol.mnt + "/veilmark_before"), "before\n");
  EXPECT_EQ(find_daemons(vol.mnt).size(), 1u) << "no second daemon";

  r = veilfs({"-o", "remount,rw", vol.cipher, vol.mnt});
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(flags_of(), before);
  write_file(vol.mnt + "/veilmark_after", "after\n");
  EXPECT_EQ(read_file(vol.mnt + "/veilmark_after"), "after\n");

  // Something that is not a veilfs mount: exit 15, named.
  r = veilfs({"-o", "remount,ro", vol.cipher, vol.root.path()});
  EXPECT_EQ(r.status, 15) << r.output;
  EXPECT_NE(r.output.find("not a veilfs mount"), std::string::npos) << r.output;
  ASSERT_NO_ERROR(m.unmount());
}

}  // namespace
}  // namespace veiltest
