#include <map>

#include "fixture.hpp"
#include "veilfs/cli/exit_codes.hpp"
#include "veilfs/crypto/random.hpp"
#include "veilfs/volume.hpp"

namespace veil::test {
namespace {

class PasswdTest : public KeytoolTest {
 protected:
  // Writes a file through the content engine, as the mount would, with the volume opened by `pass`.
  std::vector<uint8_t> write_plain_file(const std::string& pass, const std::string& name, size_t size) {
    auto v = Volume::open(vol_, bytes_of(pass));
    std::string enc = v->names().encrypt(v->root_iv(), name);
    UniqueFd fd(::openat(v->root_fd(), enc.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    EXPECT_TRUE(fd);
    std::vector<uint8_t> data(size);
    random_fill(data);
    ContentFile f(v->content(), std::move(fd));
    f.write(0, data);
    return data;
  }
  std::vector<uint8_t> read_plain_file(const std::string& pass, const std::string& name) {
    auto v = Volume::open(vol_, bytes_of(pass));
    std::string enc = v->names().encrypt(v->root_iv(), name);
    UniqueFd fd(::openat(v->root_fd(), enc.c_str(), O_RDONLY | O_CLOEXEC));
    EXPECT_TRUE(fd);
    ContentFile f(v->content(), std::move(fd));
    std::vector<uint8_t> out(f.size());
    EXPECT_EQ(f.read(0, out), out.size());
    return out;
  }
  // Every backing file but the config, by name: what a passphrase change must not touch.
  std::map<std::string, std::string> contents_except_config() const {
    std::map<std::string, std::string> m;
    for (const auto& e : std::filesystem::directory_iterator(vol_)) {
      if (e.path().filename() == "veilfs.conf") continue;
      std::ifstream f(e.path(), std::ios::binary);
      m[e.path().filename().string()] = std::string(std::istreambuf_iterator<char>(f), {});
    }
    return m;
  }
};

TEST_F(PasswdTest, NewPassphraseOpensTheSameMasterKeyAndOldOneNoLonger) {
  init_volume("old pass");
  SecretBytes master = master_of("old pass");
  auto r = run_veilkey({"passwd", vol_}, with_stdin("old pass\nnew pass\n"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_FALSE(opens("old pass"));
  ASSERT_TRUE(opens("new pass"));
  EXPECT_TRUE(master_of("new pass").equals(master.span()));
  auto cfg = load_config();
  ASSERT_EQ(cfg.slots.size(), 1u);
  EXPECT_EQ(cfg.slots[0].kdf.memlimit, 65536u);  // the old slot's cost is kept
}

TEST_F(PasswdTest, FilesWrittenBeforeReadBackWithTheNewPassphraseAndAreUntouched) {
  init_volume("old pass");
  auto data = write_plain_file("old pass", "notes.txt", 100000);
  auto before = contents_except_config();
  auto r = run_veilkey({"passwd", vol_, "--passfile", passfile("old pass"), "--new-passfile", passfile("new pass")});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(contents_except_config(), before);
  EXPECT_EQ(read_plain_file("new pass", "notes.txt"), data);
  EXPECT_THROW(Volume::open(vol_, bytes_of("old pass")), Error);
}

TEST_F(PasswdTest, ChangesOnlyTheSlotTheOldSecretOpens) {
  init_volume("first");
  ASSERT_EQ(
      run_veilkey(
          cat({"slot", "add", vol_, "--passfile", passfile("first"), "--new-passfile", passfile("second")}, kFastKdf))
          .code,
      0);
  auto r = run_veilkey({"passwd", vol_, "--passfile", passfile("second"), "--new-passfile", passfile("third")});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(opens("first"));
  EXPECT_FALSE(opens("second"));
  EXPECT_TRUE(opens("third"));
  EXPECT_EQ(load_config().slots.size(), 2u);
}

TEST_F(PasswdTest, KeyFileToPassphraseAndBackWithNewKdf) {
  std::string key = "key file bytes\n\x01\x02";
  auto r = run_veilkey(cat({"init", vol_, "--keyfile", write_file("k1", key)}, kFastKdf));
  ASSERT_EQ(r.code, 0) << r.err;
  r = run_veilkey({"passwd", vol_, "--keyfile", root_ + "/k1", "--new-extpass", "echo via-program", "--kdf-memory",
                   "131072", "--kdf-ops", "2"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(opens("via-program"));
  auto cfg = load_config();
  EXPECT_EQ(cfg.slots.at(0).kind, format::SlotKind::Passphrase);
  EXPECT_EQ(cfg.slots.at(0).kdf.memlimit, 131072u);
  EXPECT_EQ(cfg.slots.at(0).kdf.opslimit, 2u);
  r = run_veilkey({"passwd", vol_, "--new-keyfile", write_file("k2", "second key")}, with_stdin("via-program\n"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(opens("second key"));
  EXPECT_EQ(load_config().slots.at(0).kind, format::SlotKind::KeyFile);
}

TEST_F(PasswdTest, WrongPassphraseExits10AndChangesNothing) {
  init_volume("right");
  std::string before = config_text();
  auto r = run_veilkey({"passwd", vol_}, with_stdin("wrong\nnew\n"));
  EXPECT_EQ(r.code, cli::kExitWrongSecret) << r.err;
  EXPECT_EQ(config_text(), before);
}

TEST_F(PasswdTest, WrongKeyFileExits10) {
  auto r = run_veilkey(cat({"init", vol_, "--keyfile", write_file("good.key", "good key")}, kFastKdf));
  ASSERT_EQ(r.code, 0);
  std::string before = config_text();
  r = run_veilkey({"passwd", vol_, "--keyfile", write_file("bad.key", "bad key"), "--new-passfile", passfile("n")});
  EXPECT_EQ(r.code, cli::kExitWrongSecret) << r.err;
  EXPECT_EQ(config_text(), before);
  r = run_veilkey({"passwd", vol_, "--keyfile", root_ + "/missing.key", "--new-passfile", passfile("n")});
  EXPECT_EQ(r.code, cli::kExitUsage) << r.err;
}

TEST_F(PasswdTest, MissingNewSecretOnStdinFailsCleanly) {
  init_volume("right");
  std::string before = config_text();
  auto r = run_veilkey({"passwd", vol_}, with_stdin("right\n"));
  EXPECT_EQ(r.code, cli::kExitUsage) << r.err;
  EXPECT_EQ(config_text(), before);
}

}  // namespace
}  // namespace veil::test
