// veilfs and veilfs fsck given bad input: every case gets a message in words that names the file and says why
// (never a bare errno number) and the exit code of README's table; nothing is mounted; and everything that can be
// checked without the passphrase is checked before it is read (a marker file shows whether --extpass ran).
// "No permission" cases run the daemon as nobody (65534).
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <regex>
#include <sstream>

#include "harness.hpp"

namespace veiltest {
namespace {

constexpr uid_t kNobody = 65534;

bool has_bare_errno(const std::string& out) {
  static const std::regex bare(R"(:\s*-?[0-9]+\s*$)");
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);)
    if (std::regex_search(line, bare)) return true;
  return false;
}

class BadInput : public ::testing::Test {
 protected:
  void SetUp() override {
    VEILTEST_SKIP_WITHOUT_FUSE();
    ASSERT_NO_ERROR(vol_.create());
    marker_ = vol_.root.path() + "/extpass-ran";
    extpass_ = "touch '" + marker_ + "'; cat '" + vol_.passfile + "'";
  }
  void TearDown() override {
    if (is_mountpoint(vol_.mnt)) run({"fusermount3", "-uz", vol_.mnt});
  }
  static RunResult veilfs(const std::vector<std::string>& args, const std::vector<std::string>& prefix = {}) {
    std::vector<std::string> argv = prefix;
    argv.push_back(veilfs_binary());
    argv.insert(argv.end(), args.begin(), args.end());
    RunOptions o;
    o.timeout = std::chrono::seconds(60);
    return run(argv, o);
  }
  static RunResult veilfs_as_nobody(const std::vector<std::string>& args) {
    return veilfs(args, {"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"});
  }
  // Expects the exit code, every phrase in the output, no bare errno, no mount and (for cases that fail before
  // the secret is needed) that --extpass did not run.
  void check(const std::string& what, const RunResult& r, int code, const std::vector<std::string>& says,
             const std::string& mnt = "") {
    EXPECT_EQ(r.status, code) << what << ": " << r.output;
    for (const auto& s : says)
      EXPECT_NE(r.output.find(s), std::string::npos) << what << ": expected '" << s << "' in: " << r.output;
    EXPECT_FALSE(has_bare_errno(r.output)) << what << ": " << r.output;
    EXPECT_NE(r.output.find("veilfs"), std::string::npos) << what << ": " << r.output;
    const std::string& m = mnt.empty() ? vol_.mnt : mnt;
    EXPECT_FALSE(is_mountpoint(m)) << what;
    if (is_mountpoint(m)) run({"fusermount3", "-uz", m});  // never leave a mount to the next case
    EXPECT_FALSE(std::filesystem::exists(marker_))
        << what << ": the passphrase was read for a mount that could not happen";
    std::filesystem::remove(marker_);
  }

  VolumeDir vol_{"badinput"};
  std::string marker_, extpass_;
};

TEST_F(BadInput, Mountpoints) {
  const std::string r = vol_.root.path();
  write_file(r + "/a-file", "x");
  ASSERT_EQ(::symlink((r + "/nowhere").c_str(), (r + "/dangling").c_str()), 0);
  check("missing", veilfs({"--extpass", extpass_, vol_.cipher, r + "/nomnt"}), 15,
        {"mountpoint " + r + "/nomnt does not exist", "mkdir"}, r + "/nomnt");
  check("a file", veilfs({"--extpass", extpass_, vol_.cipher, r + "/a-file"}), 15,
        {"mountpoint " + r + "/a-file is not a directory"}, r + "/a-file");
  check("below a file", veilfs({"--extpass", extpass_, vol_.cipher, r + "/a-file/x"}), 15,
        {"mountpoint " + r + "/a-file/x: Not a directory"}, r + "/a-file/x");
  check("dangling symlink", veilfs({"--extpass", extpass_, vol_.cipher, r + "/dangling"}), 15,
        {"mountpoint " + r + "/dangling does not exist (a symlink to a missing directory)"}, r + "/dangling");
}

TEST_F(BadInput, NonEmptyMountpointIsRefusedUnlessAsked) {
  write_file(vol_.mnt + "/" + std::string(kNameMarker) + "_precious", "the user's file");
  check("non-empty", veilfs({"--extpass", extpass_, vol_.cipher, vol_.mnt}), 15,
        {"mountpoint " + vol_.mnt + " is not empty (1 entry)", "--nonempty"});
  for (const std::vector<std::string>& allow : {std::vector<std::string>{"--nonempty"}, {"-o", "nonempty,noatime"}}) {
    std::vector<std::string> args = allow;
    args.insert(args.end(), {"--passfile", vol_.passfile, vol_.cipher, vol_.mnt});
    auto res = veilfs(args);
    ASSERT_EQ(res.status, 0) << allow[0] << ": " << res.output;
    EXPECT_TRUE(is_mountpoint(vol_.mnt));
    EXPECT_EQ(list_dir(vol_.mnt), std::vector<std::string>{}) << "the mount shows the volume, not the directory";
    auto pids = find_daemons(vol_.mnt);
    ASSERT_EQ(run({"fusermount3", "-u", vol_.mnt}).status, 0);
    for (pid_t p : pids) EXPECT_TRUE(wait_gone(p, std::chrono::seconds(20)));
  }
  EXPECT_EQ(read_file(vol_.mnt + "/" + std::string(kNameMarker) + "_precious"), "the user's file");
}

TEST_F(BadInput, AMountpointThatIsAlreadyAMountIsRefused) {
  Mount m(vol_);
  ASSERT_TRUE(m.ok()) << m.error();
  check("already mounted", veilfs({"--extpass", extpass_, vol_.cipher, vol_.mnt}), 15,
        {"mountpoint " + vol_.mnt + " is already a mount point (fuse.veilfs of " + vol_.cipher + ")", "fusermount3 -u"},
        "/nonexistent-so-that-the-live-mount-is-not-counted");
  EXPECT_EQ(find_daemons(vol_.mnt).size(), 1u) << "a second daemon was stacked on the mount";
}

TEST_F(BadInput, ADeadMountSaysRunFusermount) {
  auto r = veilfs({"--passfile", vol_.passfile, vol_.cipher, vol_.mnt});
  ASSERT_EQ(r.status, 0) << r.output;
  auto pids = find_daemons(vol_.mnt);
  ASSERT_EQ(pids.size(), 1u);
  ::kill(pids[0], SIGKILL);
  ASSERT_TRUE(wait_gone(pids[0], std::chrono::seconds(20)));
  struct stat st {};
  ASSERT_EQ(::stat(vol_.mnt.c_str(), &st), -1);
  ASSERT_EQ(errno, ENOTCONN);
  r = veilfs({"--extpass", extpass_, vol_.cipher, vol_.mnt});
  EXPECT_EQ(r.status, 15) << r.output;
  EXPECT_NE(r.output.find("mountpoint " + vol_.mnt + " is a dead FUSE mount"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("run `fusermount3 -u " + vol_.mnt + "`"), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(marker_));
  r = veilfs({"--extpass", extpass_, vol_.cipher, vol_.mnt + "/sub"});
  EXPECT_EQ(r.status, 15) << r.output;
  EXPECT_NE(r.output.find("is inside a dead FUSE mount (" + vol_.mnt + ")"), std::string::npos) << r.output;
  ASSERT_EQ(run({"fusermount3", "-u", vol_.mnt}).status, 0);
  r = veilfs({"--passfile", vol_.passfile, vol_.cipher, vol_.mnt});
  EXPECT_EQ(r.status, 0) << "after fusermount3 -u the mount works again: " << r.output;
  ASSERT_EQ(run({"fusermount3", "-u", vol_.mnt}).status, 0);
}

TEST_F(BadInput, CipherDirs) {
  const std::string r = vol_.root.path();
  write_file(r + "/a-file", "x");
  ::mkdir((r + "/empty").c_str(), 0755);
  check("missing", veilfs({"--extpass", extpass_, r + "/nosuchdir", vol_.mnt}), 11,
        {r + "/nosuchdir: the cipher dir does not exist"});
  check("a file", veilfs({"--extpass", extpass_, r + "/a-file", vol_.mnt}), 11,
        {r + "/a-file: the cipher dir is not a directory"});
  check("not a volume", veilfs({"--extpass", extpass_, r + "/empty", vol_.mnt}), 11,
        {r + "/empty: not a veilfs volume (there is no veilfs.conf)"});
  // fsck says the same, with the same codes.
  check("fsck missing", veilfs({"fsck", r + "/nosuchdir", "--extpass", extpass_}), 11,
        {r + "/nosuchdir: the cipher dir does not exist"});
  check("fsck not a volume", veilfs({"fsck", r + "/empty", "--extpass", extpass_}), 11, {"not a veilfs volume"});
  check("fsck usage error", veilfs({"fsck", vol_.cipher, "--delete-orphans", "--extpass", extpass_}), 2,
        {"--delete-orphans and --rename-conflicts need --repair"});
}

TEST_F(BadInput, SecretSources) {
  const std::string r = vol_.root.path();
  ::mkdir((r + "/a-dir").c_str(), 0755);
  write_file(r + "/empty", "");
  ASSERT_EQ(::symlink((r + "/nowhere").c_str(), (r + "/dangling").c_str()), 0);
  auto mount_with = [&](std::vector<std::string> args) {
    args.push_back(vol_.cipher);
    args.push_back(vol_.mnt);
    return veilfs(args);
  };
  check("missing passfile", mount_with({"--passfile", r + "/nope"}), 2,
        {"--passfile " + r + "/nope: No such file or directory"});
  check("missing passfile via -o", mount_with({"-o", "passfile=" + r + "/nope"}), 2,
        {"-o passfile=" + r + "/nope: No such file or directory"});
  check("passfile is a directory", mount_with({"--passfile", r + "/a-dir"}), 2,
        {"--passfile " + r + "/a-dir: Is a directory"});
  check("empty passfile", mount_with({"--passfile", r + "/empty"}), 2,
        {"--passfile " + r + "/empty: the file is empty"});
  check("dangling passfile", mount_with({"--passfile", r + "/dangling"}), 2,
        {"(a symlink to a missing file)", r + "/dangling"});
  check("empty keyfile", mount_with({"--keyfile", r + "/empty"}), 2, {"--keyfile " + r + "/empty: the file is empty"});
  check("extpass exits 3", mount_with({"--extpass", "exit 3"}), 2,
        {"the --extpass program failed: it exited with status 3"});
  check("extpass killed", mount_with({"--extpass", "kill -TERM $$"}), 2,
        {"the --extpass program failed: it was killed by signal 15"});
  check("empty -o passfile=", mount_with({"-o", "passfile="}), 2, {"-o passfile= needs a value"});
}

TEST_F(BadInput, ConflictingSecretOptionsAreRefusedBeforeAnyIsUsed) {
  const std::string pf = vol_.passfile;
  for (const auto& [args, says] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"--passfile", pf, "--extpass", extpass_}, "--passfile and --extpass cannot be combined"},
           {{"--keyfile", pf, "--passfile", pf}, "--passfile and --keyfile cannot be combined"},
           {{"--passfile", pf, "-o", "passfile=" + pf}, "--passfile and -o passfile= cannot be combined"},
           {{"-o", "extpass=" + extpass_ + ",keyfile=" + pf}, "-o extpass= and -o keyfile= cannot be combined"},
       }) {
    std::vector<std::string> a = args;
    a.push_back(vol_.cipher);
    a.push_back(vol_.mnt);
    check(says, veilfs(a), 2, {says});
  }
  check("fsck", veilfs({"fsck", vol_.cipher, "--passfile", pf, "--extpass", extpass_}), 2,
        {"--passfile and --extpass cannot be combined"});
}

// -o junk used to be noticed by libfuse after the KDF (0.7 s, 260 MiB) and reported as a failed mount (15).
TEST_F(BadInput, UnknownMountOptionsAreRefusedBeforeThePassphraseIsRead) {
  check("junk", veilfs({"--extpass", extpass_, "-o", "noatime,junk", vol_.cipher, vol_.mnt}), 2,
        {"unknown or invalid mount option: -o junk (unknown option(s): `-o junk')"});
  check("two bad", veilfs({"--extpass", extpass_, "-o", "zap", "-o", "frob=1", vol_.cipher, vol_.mnt}), 2,
        {"-o zap (unknown option", "-o frob=1 (unknown option"});
  // Accepted by libfuse but fatal at the kernel's INIT with veilfs's INIT handler: refused up front, not after a
  // background mount has reported success.
  check("max_read", veilfs({"--extpass", extpass_, "-o", "max_read=131072", vol_.cipher, vol_.mnt}), 2,
        {"-o max_read=131072: not supported"});
  // Options come first: a bad option is reported even when the mountpoint is missing too.
  check("junk, no mountpoint", veilfs({"--extpass", extpass_, "-o", "junk", vol_.cipher, vol_.mnt + "/nope"}), 2,
        {"-o junk"});
  // Known ones still mount.
  auto r = veilfs({"--passfile", vol_.passfile, "-o", "noatime,nodev,nosuid", vol_.cipher, vol_.mnt});
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(is_mountpoint(vol_.mnt));
  auto pids = find_daemons(vol_.mnt);
  run({"fusermount3", "-u", vol_.mnt});
  for (pid_t p : pids) wait_gone(p, std::chrono::seconds(20));
}

// An option libfuse accepts but the kernel refuses at mount time: libfuse's reason, then ours, exit 15.
TEST_F(BadInput, AFailedMountSaysWhatFailed) {
  auto r = veilfs({"--passfile", vol_.passfile, "-o", "blkdev", vol_.cipher, vol_.mnt});
  EXPECT_EQ(r.status, 15) << r.output;
  EXPECT_NE(r.output.find("Block device required"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("veilfs: mounting " + vol_.cipher + " on " + vol_.mnt + " failed"), std::string::npos)
      << r.output;
  EXPECT_FALSE(is_mountpoint(vol_.mnt));
}

TEST_F(BadInput, NoPermissionAsAnOrdinaryUser) {
  // Under /tmp, not the build tree: the ordinary user must be able to reach it.
  char tmpl[] = "/tmp/veilfs-badinput-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string d = tmpl;
  struct Cleanup {
    std::string d;
    ~Cleanup() { std::filesystem::remove_all(d); }
  } cleanup{d};
  ASSERT_EQ(::chmod(d.c_str(), 0755), 0);
  ASSERT_EQ(
      sh("cp -a '" + vol_.cipher + "' " + d + "/c && cp '" + vol_.passfile + "' " + d + "/pf && mkdir " + d + "/m " +
         d + "/private && chown -R 65534:65534 " + d + "/c " + d + "/pf " + d + "/m && chmod 700 " + d + "/private")
          .status,
      0);
  const std::string c = d + "/c", m = d + "/m", pf = d + "/pf";
  check("mountpoint not reachable", veilfs_as_nobody({"--passfile", pf, c, d + "/private/m"}), 15,
        {"mountpoint " + d + "/private/m: Permission denied"}, d + "/private/m");
  ASSERT_EQ(::chown(pf.c_str(), 0, 0), 0);
  ASSERT_EQ(::chmod(pf.c_str(), 0600), 0);
  check("unreadable passfile", veilfs_as_nobody({"--passfile", pf, c, m}), 2,
        {"--passfile " + pf + ": Permission denied"}, m);
  ASSERT_EQ(::chown(pf.c_str(), kNobody, kNobody), 0);
  ASSERT_EQ(::chown((c + "/veilfs.conf").c_str(), 0, 0), 0);
  ASSERT_EQ(::chmod((c + "/veilfs.conf").c_str(), 0400), 0);
  check("unreadable config", veilfs_as_nobody({"--passfile", pf, c, m}), 14,
        {c + "/veilfs.conf: cannot read the config: Permission denied"}, m);
  check("unreadable config, fsck", veilfs_as_nobody({"fsck", c, "--passfile", pf}), 14,
        {c + "/veilfs.conf: cannot read the config: Permission denied"}, m);
  ASSERT_EQ(::chown(c.c_str(), 0, 0), 0);
  ASSERT_EQ(::chmod(c.c_str(), 0700), 0);
  check("unreadable cipher dir", veilfs_as_nobody({"--passfile", pf, c, m}), 14,
        {c + ": cannot open the cipher dir: Permission denied"}, m);
}

TEST_F(BadInput, VersionAndHelpSayWhatTheyShould) {
  auto r = veilfs({"--version"});
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(r.output.rfind("veilfs ", 0), 0u) << r.output;
  for (const char* s : {"format: version 1", "libsodium: 1.", "libfuse: 3."})
    EXPECT_NE(r.output.find(s), std::string::npos) << s << " missing from: " << r.output;
  r = veilfs({"--help"});
  EXPECT_EQ(r.status, 0) << r.output;
  for (const char* s : {"-o debug", "--nonempty", "fsck: 26", "15 mount failed", "fusermount3 -u"})
    EXPECT_NE(r.output.find(s), std::string::npos) << s << " missing from --help";
  r = veilfs({"fsck", "--help"});
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(r.output.find(" arg "), std::string::npos) << "values are named (FILE, CMD), not 'arg':\n" << r.output;
  EXPECT_NE(r.output.find("--passfile FILE"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace veiltest
