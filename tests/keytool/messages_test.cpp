// Every bad input gets a message in words (the file named, the reason from strerror, never a bare errno number)
// and the exit code of the table in README.md. Cases that need "no permission" run veilkey as nobody (65534).
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <regex>

#include "fixture.hpp"
#include "veilfs/cli/exit_codes.hpp"

namespace veil::test {
namespace {

constexpr uid_t kNobody = 65534;

struct Expect {
  int code;
  std::vector<std::string> says;  // each must appear in stderr
};

// "open veilfs.conf: 13", "read secret: 21": a line that ends in a bare number after a colon.
bool has_bare_errno(const std::string& err) {
  static const std::regex bare(R"(:\s*-?[0-9]+\s*$)");
  std::istringstream in(err);
  for (std::string line; std::getline(in, line);)
    if (std::regex_search(line, bare)) return true;
  return false;
}

class MessagesTest : public KeytoolTest {
 protected:
  void SetUp() override {
    KeytoolTest::SetUp();
    ASSERT_EQ(::chmod(root_.c_str(), 0755), 0);  // nobody must reach the files its cases are about
  }
  static void check(const std::string& what, const RunResult& r, const Expect& e) {
    EXPECT_EQ(r.code, e.code) << what << ": " << r.err;
    for (const auto& s : e.says)
      EXPECT_NE(r.err.find(s), std::string::npos) << what << ": expected '" << s << "' in: " << r.err;
    EXPECT_FALSE(has_bare_errno(r.err)) << what << ": " << r.err;
    EXPECT_NE(r.err.find("veilkey: "), std::string::npos) << what << ": " << r.err;
  }
  RunResult as_nobody(const std::vector<std::string>& args, const RunOptions& opt = {}) {
    return run_program("/usr/bin/setpriv",
                       cat({"--reuid=65534", "--regid=65534", "--clear-groups", veilkey_path()}, args), opt);
  }
  // A volume whose files belong to nobody, so that only the file under test is out of its reach.
  void init_owned_by_nobody() {
    init_volume("pw");
    for (const auto& e : std::filesystem::recursive_directory_iterator(vol_))
      ASSERT_EQ(::lchown(e.path().c_str(), kNobody, kNobody), 0);
    ASSERT_EQ(::chown(vol_.c_str(), kNobody, kNobody), 0);
  }
};

TEST(BareErrno, TheCheckItselfWorks) {
  EXPECT_TRUE(has_bare_errno("veilfs: open nosuchdir: 2\n"));
  EXPECT_TRUE(has_bare_errno("x\nveilfs: read secret: 21"));
  EXPECT_FALSE(has_bare_errno("veilfs: the --extpass program failed: it exited with status 3\n"));
  EXPECT_FALSE(has_bare_errno("veilfs: open nosuchdir: No such file or directory\n"));
}

TEST_F(MessagesTest, BadCipherDirs) {
  const std::string file = write_file("a-file", "x");
  const std::string dangling = root_ + "/dangling";
  ASSERT_EQ(::symlink((root_ + "/nowhere").c_str(), dangling.c_str()), 0);
  const std::string empty = root_ + "/empty-dir";
  std::filesystem::create_directory(empty);
  check("missing", run_veilkey({"info", root_ + "/nosuchdir"}),
        {cli::kExitNotVolume, {root_ + "/nosuchdir: the cipher dir does not exist"}});
  check("a file", run_veilkey({"info", file}), {cli::kExitNotVolume, {file + ": the cipher dir is not a directory"}});
  check("below a file", run_veilkey({"info", file + "/sub"}),
        {cli::kExitNotVolume,
         {file + "/sub: the cipher dir does not exist (a component of the path is not a directory)"}});
  check("dangling symlink", run_veilkey({"info", dangling}),
        {cli::kExitNotVolume, {dangling + ": the cipher dir does not exist (a symlink to a missing directory)"}});
  check("empty dir", run_veilkey({"info", empty}), {cli::kExitNotVolume, {empty + ": not a veilfs volume"}});
  // Every command that needs a volume says the same, before asking for any secret.
  for (auto cmd : std::vector<std::vector<std::string>>{{"passwd", root_ + "/nosuchdir"},
                                                        {"slot", "add", root_ + "/nosuchdir"},
                                                        {"export-key", root_ + "/nosuchdir"}})
    check(cmd[0], run_veilkey(cmd, with_stdin("pw\nnew\n")),
          {cli::kExitNotVolume, {"nosuchdir: the cipher dir does not exist"}});
}

TEST_F(MessagesTest, BadConfigFiles) {
  init_volume("pw");
  const std::string conf = vol_ + "/veilfs.conf";
  std::filesystem::remove(conf);
  std::filesystem::create_directory(conf);
  check("config is a directory", run_veilkey({"info", vol_}), {cli::kExitCorrupt, {conf + " is not a regular file"}});
  std::filesystem::remove(conf);
  std::ofstream(conf).close();
  check("empty config", run_veilkey({"info", vol_}), {cli::kExitCorrupt, {conf + ": "}});
  std::filesystem::remove(conf);
  ASSERT_EQ(::symlink("elsewhere", conf.c_str()), 0);
  check("config is a dangling symlink", run_veilkey({"info", vol_}),
        {cli::kExitIo, {conf + ": cannot read the config: it is a symlink (refused)"}});
}

TEST_F(MessagesTest, NoPermissionAsAnOrdinaryUser) {
  init_owned_by_nobody();
  ASSERT_EQ(::chown((vol_ + "/veilfs.conf").c_str(), 0, 0), 0);  // 0400, root's
  check("unreadable config", as_nobody({"info", vol_}),
        {cli::kExitIo, {vol_ + "/veilfs.conf: cannot read the config: Permission denied"}});
  ASSERT_EQ(::chown(vol_.c_str(), 0, 0), 0);
  ASSERT_EQ(::chmod(vol_.c_str(), 0700), 0);
  check("unreadable cipher dir", as_nobody({"info", vol_}),
        {cli::kExitIo, {vol_ + ": cannot open the cipher dir: Permission denied"}});
  // A pass file nobody may not read, for a volume it may use.
  ASSERT_EQ(::chown(vol_.c_str(), kNobody, kNobody), 0);
  ASSERT_EQ(::chown((vol_ + "/veilfs.conf").c_str(), kNobody, kNobody), 0);
  const std::string pf = passfile("pw");
  ASSERT_EQ(::chmod(pf.c_str(), 0600), 0);
  check("unreadable pass file", as_nobody({"export-key", vol_, "--passfile", pf}),
        {cli::kExitUsage, {"--passfile " + pf + ": Permission denied"}});
  // init where nobody may not create the directory.
  const std::string rootonly = root_ + "/rootonly";
  std::filesystem::create_directory(rootonly);
  ASSERT_EQ(::chmod(rootonly.c_str(), 0755), 0);
  check("init without write permission", as_nobody(cat({"init", rootonly + "/vol"}, kFastKdf), with_stdin("pw\n")),
        {cli::kExitIo, {rootonly + "/vol: cannot create the cipher dir: Permission denied"}});
}

TEST_F(MessagesTest, BadSecretSources) {
  init_volume("pw");
  const std::string dir_as_file = root_ + "/a-dir";
  std::filesystem::create_directory(dir_as_file);
  const std::string dangling = root_ + "/dangling-pass";
  ASSERT_EQ(::symlink((root_ + "/nowhere").c_str(), dangling.c_str()), 0);
  const std::string empty = write_file("empty", "");
  const std::string blank_first = write_file("blank-first", "\nsecond line\n");
  const std::string missing = root_ + "/no-such-pass";
  auto exp = [&](std::vector<std::string> extra) { return run_veilkey(cat({"export-key", vol_}, extra)); };
  check("missing pass file", exp({"--passfile", missing}),
        {cli::kExitUsage, {"--passfile " + missing + ": No such file or directory"}});
  check("pass file is a directory", exp({"--passfile", dir_as_file}),
        {cli::kExitUsage, {"--passfile " + dir_as_file + ": Is a directory"}});
  check("dangling pass file", exp({"--passfile", dangling}),
        {cli::kExitUsage, {"--passfile " + dangling + ": No such file or directory (a symlink to a missing file)"}});
  check("empty pass file", exp({"--passfile", empty}),
        {cli::kExitUsage, {"--passfile " + empty + ": the file is empty"}});
  check("blank first line", exp({"--passfile", blank_first}),
        {cli::kExitUsage, {"--passfile " + blank_first + ": the first line is empty"}});
  check("empty key file", exp({"--keyfile", empty}), {cli::kExitUsage, {"--keyfile " + empty + ": the file is empty"}});
  check("key file is a directory", exp({"--keyfile", dir_as_file}),
        {cli::kExitUsage, {"--keyfile " + dir_as_file + ": Is a directory"}});
  check("extpass fails", exp({"--extpass", "echo pw; exit 3"}),
        {cli::kExitUsage, {"the --extpass program failed: it exited with status 3"}});
  check("extpass killed", exp({"--extpass", "kill -9 $$"}),
        {cli::kExitUsage, {"the --extpass program failed: it was killed by signal 9"}});
  check("extpass not found", exp({"--extpass", "/no/such/program"}),
        {cli::kExitUsage, {"the --extpass program failed: it could not be run", "127"}});
  check("extpass prints nothing", exp({"--extpass", "true"}),
        {cli::kExitUsage, {"the --extpass program printed nothing"}});
  check("empty stdin", run_veilkey({"export-key", vol_}, with_stdin("")),
        {cli::kExitUsage, {"standard input ended before the passphrase was read"}});
  check("empty line on stdin", run_veilkey({"export-key", vol_}, with_stdin("\n")),
        {cli::kExitUsage, {"empty passphrase on standard input"}});
  check("missing new pass file",
        run_veilkey(cat({"slot", "add", vol_, "--passfile", passfile("pw"), "--new-passfile", missing}, kFastKdf)),
        {cli::kExitUsage, {"--new-passfile " + missing + ": No such file or directory"}});
  check("missing recovery code file", run_veilkey(cat({"recover", vol_, "--recovery-code-file", missing}, kFastKdf)),
        {cli::kExitUsage, {"--recovery-code-file " + missing + ": No such file or directory"}});
  EXPECT_EQ(load_config().slots.size(), 1u);
}

// Two sources for one secret: refused before any of them is used (the program is not run, nothing is asked).
TEST_F(MessagesTest, ConflictingSecretOptionsAreRefused) {
  init_volume("pw");
  const std::string marker = root_ + "/extpass-ran";
  const std::string extpass = "touch '" + marker + "'; echo pw";
  const std::string pf = passfile("pw"), kf = write_file("key", "some key");
  struct Conflict {
    std::vector<std::string> args;
    std::string says;
  };
  for (const auto& c : std::vector<Conflict>{
           {{"export-key", vol_, "--passfile", pf, "--extpass", extpass},
            "--passfile and --extpass cannot be combined"},
           {{"export-key", vol_, "--keyfile", kf, "--passfile", pf}, "--keyfile and --passfile cannot be combined"},
           {{"slot", "add", vol_, "--extpass", extpass, "--new-passfile", pf, "--new-keyfile", kf},
            "--new-keyfile and --new-passfile cannot be combined"},
           {{"slot", "add", vol_, "--extpass", extpass, "--new-random-keyfile", root_ + "/k2", "--new-passfile", pf},
            "--new-random-keyfile and --new-passfile cannot be combined"},
           {{"passwd", vol_, "--extpass", extpass, "--new-extpass", "echo a", "--new-passfile", pf},
            "--new-passfile and --new-extpass cannot be combined"},
           {{"init", root_ + "/vol2", "--extpass", extpass, "--keyfile", kf},
            "--keyfile and --extpass cannot be combined"},
           {{"slot", "remove", vol_, "--slot", "0", "--extpass", extpass, "--keyfile", kf},
            "--keyfile and --extpass cannot be combined"},
       }) {
    check(c.args[0], run_veilkey(c.args), {cli::kExitUsage, {c.says}});
    EXPECT_FALSE(std::filesystem::exists(marker)) << c.says << ": the --extpass program ran";
  }
  EXPECT_FALSE(std::filesystem::exists(root_ + "/vol2"));
  EXPECT_FALSE(std::filesystem::exists(root_ + "/k2"));
  EXPECT_EQ(load_config().slots.size(), 1u);
}

// A small tmpfs that the config does not fit on: exit 14, the cipher-side file named, and nothing left behind.
TEST_F(MessagesTest, FullDiskOnInitSaysSoAndLeavesNothing) {
  if (::geteuid() != 0) GTEST_SKIP() << "mounting a tmpfs needs root";
  const std::string small = root_ + "/small";
  std::filesystem::create_directory(small);
  if (::mount("tmpfs", small.c_str(), "tmpfs", 0, "size=4k") != 0) GTEST_SKIP() << "cannot mount a tmpfs here";
  struct Unmount {
    std::string p;
    ~Unmount() { ::umount2(p.c_str(), MNT_DETACH); }
  } unmount{small};
  const std::string pf = passfile("pw");
  // A directory init creates is removed again...
  check("ENOSPC, new dir", run_veilkey(cat({"init", small + "/vol", "--passfile", pf}, kFastKdf)),
        {cli::kExitIo, {small + "/vol: cannot create the volume: ", "veilfs.", "No space left on device"}});
  EXPECT_FALSE(std::filesystem::exists(small + "/vol"));
  // ...and one that existed (empty) is left empty.
  std::filesystem::create_directory(small + "/existing");
  check("ENOSPC, existing dir", run_veilkey(cat({"init", small + "/existing", "--passfile", pf}, kFastKdf)),
        {cli::kExitIo, {"No space left on device"}});
  EXPECT_TRUE(std::filesystem::is_empty(small + "/existing"));
}

TEST_F(MessagesTest, FailedInitLeavesNoDirectoryBehind) {
  const std::string pf = passfile("pw");
  check("missing pass file", run_veilkey(cat({"init", vol_, "--passfile", root_ + "/nope"}, kFastKdf)),
        {cli::kExitUsage, {"--passfile " + root_ + "/nope: No such file or directory"}});
  EXPECT_FALSE(std::filesystem::exists(vol_));
  check("empty passphrase", run_veilkey(cat({"init", vol_}, kFastKdf), with_stdin("\n")),
        {cli::kExitUsage, {"empty passphrase"}});
  EXPECT_FALSE(std::filesystem::exists(vol_));
  check("bad block size", run_veilkey(cat({"init", vol_, "--passfile", pf, "--block-size", "5000"}, kFastKdf)),
        {cli::kExitUsage, {"--block-size 5000"}});
  EXPECT_FALSE(std::filesystem::exists(vol_));
  check("missing parent", run_veilkey(cat({"init", root_ + "/a/b/c", "--passfile", pf}, kFastKdf)),
        {cli::kExitIo, {root_ + "/a/b/c: cannot create the cipher dir: No such file or directory"}});
  const std::string file = write_file("a-file", "x");
  check("a file", run_veilkey(cat({"init", file, "--passfile", pf}, kFastKdf)),
        {cli::kExitRefused, {file + ": exists and is not a directory"}});
  // A directory that existed stays, untouched.
  std::filesystem::create_directory(vol_);
  check("existing empty dir, empty passphrase", run_veilkey(cat({"init", vol_}, kFastKdf), with_stdin("\n")),
        {cli::kExitUsage, {"empty passphrase"}});
  EXPECT_TRUE(std::filesystem::is_directory(vol_));
}

TEST_F(MessagesTest, KdfMemoryTakesSizes) {
  auto r = run_veilkey({"init", vol_, "--passfile", passfile("pw"), "--kdf-memory", "64M", "--kdf-ops", "1"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(load_config().slots.at(0).kdf.memlimit, uint64_t{64} << 20);
  // Parsed and within bounds: the run gets as far as the (missing) pass file.
  for (const char* ok : {"1G", "1g", "4G", "8K", "8KiB", "512MiB", "65536"})
    check(ok, run_veilkey({"init", root_ + "/v2", "--passfile", root_ + "/nope", "--kdf-memory", ok}),
          {cli::kExitUsage, {"--passfile " + root_ + "/nope"}});
  for (const char* bad : {"64X", "M", "-1", "1.5G", "99999999999999999999", "64 M", "64MB"})
    check(bad, run_veilkey({"init", root_ + "/v2", "--passfile", passfile("pw"), std::string("--kdf-memory=") + bad}),
          {cli::kExitUsage, {"--kdf-memory: '" + std::string(bad) + "' is not a size"}});
  for (const char* out : {"4K", "5G"})
    check(out, run_veilkey({"init", root_ + "/v2", "--passfile", passfile("pw"), "--kdf-memory", out}),
          {cli::kExitUsage, {"--kdf-memory must be between 8K"}});
  EXPECT_FALSE(std::filesystem::exists(root_ + "/v2"));
}

TEST_F(MessagesTest, VersionNamesTheLibrariesAndTheFormat) {
  for (const char* flag : {"--version", "-V"}) {
    auto r = run_veilkey({flag});
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out.rfind("veilkey ", 0), 0u) << r.out;
    for (const char* s : {"format: version 1", "libsodium: 1.", "libfuse: 3."})
      EXPECT_NE(r.out.find(s), std::string::npos) << s << " missing from: " << r.out;
  }
  check("unknown command", run_veilkey({"frobnicate"}), {cli::kExitUsage, {"unknown command 'frobnicate'"}});
}

TEST_F(MessagesTest, RandomKeyFileSlotsGetTheMinimumKdfCost) {
  init_volume("pw");
  const std::string key = root_ + "/vol.key";
  auto r = run_veilkey({"slot", "add", vol_, "--passfile", passfile("pw"), "--new-random-keyfile", key});
  ASSERT_EQ(r.code, 0) << r.err;
  struct stat st {};
  ASSERT_EQ(::stat(key.c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 32);
  EXPECT_EQ(st.st_mode & 07777, 0400u);
  std::ifstream f(key, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(f)), {});
  EXPECT_TRUE(opens(bytes));
  auto cfg = load_config();
  ASSERT_EQ(cfg.slots.size(), 2u);
  EXPECT_EQ(cfg.slots[1].kind, format::SlotKind::KeyFile);
  EXPECT_EQ(cfg.slots[1].kdf.opslimit, 1u);
  EXPECT_EQ(cfg.slots[1].kdf.memlimit, 8192u);
  // It opens through --keyfile like any key file.
  EXPECT_EQ(run_veilkey({"export-key", vol_, "--keyfile", key}).code, 0);

  // Never overwrites; a failed command removes the file it created.
  check("existing file", run_veilkey({"slot", "add", vol_, "--passfile", passfile("pw"), "--new-random-keyfile", key}),
        {cli::kExitUsage, {key + ": cannot create the key file: File exists"}});
  std::ifstream f2(key, std::ios::binary);
  EXPECT_EQ(std::string((std::istreambuf_iterator<char>(f2)), {}), bytes);
  const std::string key2 = root_ + "/vol2.key";
  check("wrong secret",
        run_veilkey({"slot", "add", vol_, "--passfile", passfile("wrong"), "--new-random-keyfile", key2}),
        {cli::kExitWrongSecret, {"wrong passphrase"}});
  EXPECT_FALSE(std::filesystem::exists(key2)) << "a key file for a slot that was never added";

  // Explicit --kdf-* still win; passwd and init take it too.
  r = run_veilkey(
      {"slot", "add", vol_, "--passfile", passfile("pw"), "--new-random-keyfile", key2, "--kdf-memory", "64K"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(load_config().slots.back().kdf.memlimit, 65536u);
  const std::string key3 = root_ + "/vol3.key";
  r = run_veilkey({"passwd", vol_, "--passfile", passfile("pw"), "--new-random-keyfile", key3});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_FALSE(opens("pw"));
  cfg = load_config();
  auto newest = std::max_element(cfg.slots.begin(), cfg.slots.end(), [](auto& a, auto& b) { return a.id < b.id; });
  EXPECT_EQ(newest->kdf.memlimit, 8192u);  // passwd's default is the old slot's cost, but not for a random key
  const std::string vol2 = root_ + "/v2", key4 = root_ + "/v2.key";
  r = run_veilkey({"init", vol2, "--random-keyfile", key4, "--no-recovery-code"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(run_veilkey({"export-key", vol2, "--keyfile", key4}).code, 0);
}

}  // namespace
}  // namespace veil::test
