// `veilfs fsck` as a user runs it: exit codes, what it prints, and that it modifies nothing without --repair.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <filesystem>
#include <map>

#include "test_volume.hpp"
#include "veilfs/cli/exit_codes.hpp"

namespace veil::fsck {
namespace {

using testing::pattern;
using testing::read_all;
using testing::TestVolume;
using testing::write_all;

struct CliRun {
  int code = -1;
  std::string out, err;
};

std::string slurp(const std::string& path) {
  auto b = read_all(path);
  return std::string(b.begin(), b.end());
}

// Runs the fsck command line with the passphrase on stdin (not a terminal, so it is read from there).
CliRun run_fsck(const std::vector<std::string>& args, const std::string& stdin_text = "fsck test passphrase\n") {
  char tmpl[] = "/tmp/veilfs-fsck-cli-XXXXXX";
  if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp");
  std::string t = tmpl;
  write_all(t + "/in",
            std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(stdin_text.data()), stdin_text.size()));
  std::string cmd = std::string("'") + VEILFS_FSCK_DRIVER + "' fsck";
  for (const auto& a : args) cmd += " '" + a + "'";
  cmd += " <'" + t + "/in' >'" + t + "/out' 2>'" + t + "/err'";
  int st = std::system(cmd.c_str());
  CliRun r;
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  r.out = slurp(t + "/out");
  r.err = slurp(t + "/err");
  std::filesystem::remove_all(t);
  return r;
}

// Everything about a tree that fsck could change: names, types, sizes, contents, modes, mtimes.
std::map<std::string, std::string> snapshot(const std::string& root) {
  std::map<std::string, std::string> m;
  for (const auto& e : std::filesystem::recursive_directory_iterator(root)) {
    struct stat st {};
    ::lstat(e.path().c_str(), &st);
    std::string v = std::to_string(st.st_mode) + ":" + std::to_string(st.st_size) + ":" +
                    std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec);
    if (S_ISREG(st.st_mode)) {
      auto b = read_all(e.path());
      v += ":" + std::string(b.begin(), b.end());
    }
    m[e.path().string()] = v;
  }
  return m;
}

TEST(FsckCli, CleanVolumeExitsZeroWithASummary) {
  TestVolume v;
  v.mkdir("/a");
  v.write_file("/a/f", pattern(9000, 1));
  CliRun r = run_fsck({v.dir()});
  EXPECT_EQ(r.code, cli::kExitOk) << r.err;
  EXPECT_NE(r.out.find("2 directories, 1 files, 0 symlinks, 0 other"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("clean"), std::string::npos) << r.out;
  EXPECT_EQ(r.err, "");  // no progress line: stderr is not a terminal
}

TEST(FsckCli, DamageExits26AndPrintsEachProblem) {
  TestVolume v;
  v.write_file("/f", pattern(9000, 2));
  write_all(v.abs("stray"), pattern(3, 3));
  auto bytes = read_all(v.abs(v.cipher_path("/f")));
  bytes[v.vol().content()->layout().slot_offset(0) + 70] ^= 4;
  write_all(v.abs(v.cipher_path("/f")), bytes);
  auto before = snapshot(v.dir());
  CliRun r = run_fsck({v.dir(), "--quiet"});
  EXPECT_EQ(r.code, cli::kExitFsckDamage) << r.err;
  EXPECT_NE(r.out.find("blocks-bad /f: 1 of 3 blocks fail authentication (block 0)\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("foreign-entry /stray: not an encrypted name (hidden by the mount)\n"), std::string::npos);
  EXPECT_EQ(r.out.find("veilfs fsck:"), std::string::npos) << "--quiet printed a summary";
  EXPECT_EQ(snapshot(v.dir()), before) << "fsck modified the volume without --repair";
}

TEST(FsckCli, RepairSaysWhatItRemovedAndThenExitsZero) {
  TestVolume v;
  v.write_file("/f", pattern(10, 4));
  write_all(v.abs("veilfs.diriv.tmp.00112233aabbccdd"), pattern(16, 5));
  CliRun r = run_fsck({v.dir(), "--repair"});
  EXPECT_EQ(r.code, cli::kExitOk) << r.out << r.err;
  EXPECT_NE(r.out.find("repair: removed veilfs.diriv.tmp.00112233aabbccdd\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("1 problem(s), 1 repaired"), std::string::npos) << r.out;
  EXPECT_FALSE(std::filesystem::exists(v.abs("veilfs.diriv.tmp.00112233aabbccdd")));
}

TEST(FsckCli, UnrepairableDamageStillExits26AfterRepair) {
  TestVolume v;
  write_all(v.abs("stray"), pattern(3, 6));
  CliRun r = run_fsck({v.dir(), "--repair"});
  EXPECT_EQ(r.code, cli::kExitFsckDamage);
  EXPECT_TRUE(std::filesystem::exists(v.abs("stray"))) << "repair removed something it must not touch";
}

TEST(FsckCli, WrongPassphraseExits10) {
  TestVolume v;
  CliRun r = run_fsck({v.dir()}, "wrong\n");
  EXPECT_EQ(r.code, cli::kExitWrongSecret);
  EXPECT_NE(r.err.find("wrong passphrase"), std::string::npos) << r.err;
}

TEST(FsckCli, PassfileAndExtpassAreAccepted) {
  TestVolume v;
  const std::string pf = v.dir() + "/../" + std::filesystem::path(v.dir()).filename().string() + ".pass";
  write_all(pf, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>("fsck test passphrase\n"), 21));
  EXPECT_EQ(run_fsck({v.dir(), "--passfile", pf}, "").code, cli::kExitOk);
  EXPECT_EQ(run_fsck({v.dir(), "--extpass", "echo fsck test passphrase"}, "").code, cli::kExitOk);
  std::filesystem::remove(pf);
}

TEST(FsckCli, NotAVolumeExits11) {
  char tmpl[] = "/tmp/veilfs-fsck-empty-XXXXXX";
  ASSERT_TRUE(::mkdtemp(tmpl));
  CliRun r = run_fsck({tmpl});
  EXPECT_EQ(r.code, cli::kExitNotVolume) << r.err;
  std::filesystem::remove_all(tmpl);
}

TEST(FsckCli, CorruptConfigExits13AndSaysSo) {
  TestVolume v;
  const std::string conf = v.abs("veilfs.conf");
  ::chmod(conf.c_str(), 0600);
  auto b = read_all(conf);
  b.resize(b.size() / 2);  // truncated mid-write by something that is not veilfs
  write_all(conf, b);
  CliRun r = run_fsck({v.dir()});
  EXPECT_EQ(r.code, cli::kExitCorrupt);
  EXPECT_NE(r.out.find("config-corrupt /: config file is not valid JSON (truncated or corrupt)"), std::string::npos)
      << r.out;
}

// On a terminal (here a pseudo-terminal from script(1)) a progress line is drawn on stderr and erased before the
// summary; without one (every other test) stderr stays empty.
TEST(FsckCli, ProgressLineOnlyOnATerminal) {
  if (std::system("script --version >/dev/null 2>&1") != 0) GTEST_SKIP() << "script(1) is not installed";
  TestVolume v;
  v.write_file("/f", pattern(100, 7));
  const std::string pf = v.dir() + ".pass";
  write_all(pf, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>("fsck test passphrase\n"), 21));
  const std::string out = v.dir() + ".out";
  std::string cmd = "script -qec \"'" + std::string(VEILFS_FSCK_DRIVER) + "' fsck '" + v.dir() + "' --passfile '" + pf +
                    "'\" /dev/null > '" + out + "' 2>&1";
  int st = std::system(cmd.c_str());
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << st;
  std::string text = slurp(out);
  EXPECT_NE(text.find("\r\033[Kchecking: "), std::string::npos) << text;
  EXPECT_NE(text.find("\r\033[Kveilfs fsck: 1 directories, 1 files"), std::string::npos) << text;
  std::filesystem::remove(pf);
  std::filesystem::remove(out);
}

TEST(FsckCli, UsageErrorsExit2AndHelpExits0) {
  EXPECT_EQ(run_fsck({}).code, cli::kExitUsage);
  EXPECT_EQ(run_fsck({"/tmp", "--no-such-option"}).code, cli::kExitUsage);
  CliRun h = run_fsck({"--help"});
  EXPECT_EQ(h.code, cli::kExitOk);
  EXPECT_NE(h.out.find("--repair"), std::string::npos);
}

}  // namespace
}  // namespace veil::fsck
