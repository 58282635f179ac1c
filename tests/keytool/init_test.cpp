#include "fixture.hpp"
#include "veilfs/cli/exit_codes.hpp"
#include "veilfs/crypto/aead.hpp"
#include "veilfs/format/recovery_code.hpp"

namespace veil::test {
namespace {

using InitTest = KeytoolTest;

TEST_F(InitTest, CreatesVolumeAndPrintsRecoveryCodeOfItsMasterKey) {
  std::string code = init_volume("correct horse");
  ASSERT_EQ(code.size(), 71u) << code;  // 9 groups of 7, 8 dashes
  for (size_t i = 0; i < code.size(); ++i) {
    if (i % 8 == 7) {
      EXPECT_EQ(code[i], '-') << code;
    } else {
      EXPECT_NE(std::string_view("0123456789ABCDEFGHJKMNPQRSTVWXYZ").find(code[i]), std::string::npos) << code;
    }
  }
  ASSERT_TRUE(opens("correct horse"));
  EXPECT_FALSE(opens("correct horsf"));
  SecretBytes from_code = format::decode_recovery_code(code);
  EXPECT_TRUE(from_code.equals(master_of("correct horse").span()));
  auto cfg = load_config();
  EXPECT_EQ(cfg.cipher, fastest_cipher());
  EXPECT_EQ(cfg.block_size, 4096u);
  ASSERT_EQ(cfg.slots.size(), 1u);
  EXPECT_EQ(cfg.slots[0].kind, format::SlotKind::Passphrase);
  EXPECT_EQ(cfg.slots[0].kdf.memlimit, 65536u);
  EXPECT_EQ(cfg.slots[0].kdf.opslimit, 1u);
}

TEST_F(InitTest, HonoursCipherAndBlockSize) {
  init_volume("pw", {"--cipher", "xchacha20poly1305", "--block-size", "16384"});
  auto cfg = load_config();
  EXPECT_EQ(cfg.cipher, CipherId::XChaCha20Poly1305);
  EXPECT_EQ(cfg.block_size, 16384u);
}

TEST_F(InitTest, NoRecoveryCodePrintsNothingOnStdout) {
  auto r = run_veilkey(cat({"init", vol_, "--passfile", passfile("pw"), "--no-recovery-code"}, kFastKdf));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_TRUE(opens("pw"));
}

TEST_F(InitTest, ReadsPassphraseFromStdinWhenNotATerminal) {
  auto r = run_veilkey(cat({"init", vol_}, kFastKdf), with_stdin("from stdin\n"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(opens("from stdin"));
}

TEST_F(InitTest, KeyFileSlotUsesWholeBinaryContents) {
  std::string key("\x00\x01line\nnext\xff", 12);
  auto r = run_veilkey(cat({"init", vol_, "--keyfile", write_file("k.bin", key)}, kFastKdf));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(opens(key));
  EXPECT_FALSE(opens(key.substr(0, 6)));  // not just the first line
  EXPECT_EQ(load_config().slots.at(0).kind, format::SlotKind::KeyFile);
}

TEST_F(InitTest, RefusesNonEmptyDirectoryAndLeavesItAlone) {
  std::filesystem::create_directory(vol_);
  std::ofstream(vol_ + "/precious") << "data";
  auto r = run_veilkey(cat({"init", vol_, "--passfile", passfile("pw")}, kFastKdf));
  EXPECT_EQ(r.code, cli::kExitRefused) << r.err;
  EXPECT_NE(r.err.find("non-empty"), std::string::npos);
  EXPECT_EQ(cipher_dir_names(), std::vector<std::string>{"precious"});
}

TEST_F(InitTest, RefusesExistingVolume) {
  init_volume("pw");
  std::string before = config_text();
  auto r = run_veilkey(cat({"init", vol_, "--passfile", passfile("other")}, kFastKdf));
  EXPECT_EQ(r.code, cli::kExitRefused);
  EXPECT_EQ(config_text(), before);
}

TEST_F(InitTest, RejectsKdfParametersOutOfBounds) {
  for (auto bad : std::vector<std::vector<std::string>>{{"--kdf-memory", "4096"},
                                                        {"--kdf-memory", "8589934592"},
                                                        {"--kdf-ops", "0"},
                                                        {"--kdf-ops", "65"},
                                                        {"--kdf-ops", "many"}}) {
    auto r = run_veilkey(cat({"init", vol_, "--passfile", passfile("pw")}, bad));
    EXPECT_EQ(r.code, cli::kExitUsage) << bad[0] << " " << bad[1] << ": " << r.err;
    EXPECT_FALSE(std::filesystem::exists(vol_ + "/veilfs.conf"));
  }
}

TEST_F(InitTest, RejectsUnknownCipherAndBadBlockSize) {
  auto r = run_veilkey(cat({"init", vol_, "--passfile", passfile("pw"), "--cipher", "rot13"}, kFastKdf));
  EXPECT_EQ(r.code, cli::kExitUsage);
  r = run_veilkey(cat({"init", vol_, "--passfile", passfile("pw"), "--block-size", "5000"}, kFastKdf));
  EXPECT_EQ(r.code, cli::kExitUsage) << r.err;
  EXPECT_FALSE(std::filesystem::exists(vol_ + "/veilfs.conf"));
}

TEST_F(InitTest, EmptyPassphraseIsRejected) {
  auto r = run_veilkey(cat({"init", vol_}, kFastKdf), with_stdin("\n"));
  EXPECT_EQ(r.code, cli::kExitUsage);
  EXPECT_FALSE(std::filesystem::exists(vol_ + "/veilfs.conf"));
}

TEST_F(InitTest, ExtpassRunsTheProgram) {
  auto r = run_veilkey(cat({"init", vol_, "--extpass", "echo from-program"}, kFastKdf));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(opens("from-program"));
}

}  // namespace
}  // namespace veil::test
