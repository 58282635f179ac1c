// Each way a cipher dir can be unusable has its own exit code, for every command that reads the config.
#include "fixture.hpp"
#include "veilfs/cli/exit_codes.hpp"

namespace veil::test {
namespace {

class ErrorsTest : public KeytoolTest {
 protected:
  // All the commands that read a config, each with whatever secrets it would ask for.
  std::vector<RunResult> run_every_command() {
    std::vector<std::vector<std::string>> cmds{{"info", vol_},
                                               {"slot", "list", vol_},
                                               cat({"passwd", vol_}, kFastKdf),
                                               cat({"slot", "add", vol_}, kFastKdf),
                                               {"slot", "remove", vol_, "--slot", "0"},
                                               {"export-key", vol_},
                                               cat({"recover", vol_}, kFastKdf)};
    std::vector<RunResult> out;
    for (auto& c : cmds) out.push_back(run_veilkey(c, with_stdin("pw\nnew\n")));
    return out;
  }
  void rewrite_config(const std::string& text) {
    std::filesystem::permissions(vol_ + "/veilfs.conf", std::filesystem::perms::owner_write,
                                 std::filesystem::perm_options::add);
    std::ofstream(vol_ + "/veilfs.conf", std::ios::binary | std::ios::trunc) << text;
  }
};

TEST_F(ErrorsTest, NotAVolumeExits11) {
  std::filesystem::create_directory(vol_);
  for (const auto& r : run_every_command()) EXPECT_EQ(r.code, cli::kExitNotVolume) << r.err;
  EXPECT_TRUE(std::filesystem::is_empty(vol_));
}

TEST_F(ErrorsTest, MissingDirectoryExits11) {
  for (const auto& r : run_every_command()) EXPECT_EQ(r.code, cli::kExitNotVolume) << r.err;
  EXPECT_FALSE(std::filesystem::exists(vol_));
}

TEST_F(ErrorsTest, CorruptConfigExits13) {
  init_volume("pw");
  std::string text = config_text();
  auto pos = text.find("\"block_size\": 4096");
  ASSERT_NE(pos, std::string::npos);
  text.replace(pos, 18, "\"block_size\": 8192");  // valid JSON, but the checksum no longer matches
  rewrite_config(text);
  for (const auto& r : run_every_command()) EXPECT_EQ(r.code, cli::kExitCorrupt) << r.err;
  EXPECT_EQ(config_text(), text);
}

TEST_F(ErrorsTest, TruncatedConfigExits13) {
  init_volume("pw");
  std::string text = config_text();
  rewrite_config(text.substr(0, text.size() / 2));
  for (const auto& r : run_every_command()) EXPECT_EQ(r.code, cli::kExitCorrupt) << r.err;
}

TEST_F(ErrorsTest, NewerFormatVersionExits12) {
  init_volume("pw");
  std::string text = config_text();
  auto pos = text.find("\"version\": 1");
  ASSERT_NE(pos, std::string::npos);
  text[pos + 11] = '2';
  rewrite_config(text);
  for (const auto& r : run_every_command()) {
    EXPECT_EQ(r.code, cli::kExitUnsupported) << r.err;
    EXPECT_NE(r.err.find("newer"), std::string::npos) << r.err;
  }
}

TEST_F(ErrorsTest, WriteFailureExits14AndKeepsTheOldConfig) {
  init_volume("pw");
  const std::string before = config_text();
  RunOptions opt = with_stdin("pw\nnew\n");
  opt.max_file_size = 100;  // the new config cannot be written: EFBIG, as a full disk would give ENOSPC
  auto r = run_veilkey({"passwd", vol_}, opt);
  EXPECT_EQ(r.code, cli::kExitIo) << r.err;
  EXPECT_EQ(config_text(), before);
  EXPECT_EQ(cipher_dir_names(),
            (std::vector<std::string>{"veilfs.conf", "veilfs.diriv", "veilfs.params"}));  // no temp left
  EXPECT_TRUE(opens("pw"));
  EXPECT_FALSE(opens("new"));
}

TEST_F(ErrorsTest, TamperedParametersAreCaughtAfterUnlocking) {
  // An attacker who can write the config and recompute its plain checksum downgrades the cipher: the
  // parameters' MAC (keyed by the master key) catches it as soon as a secret opens a slot.
  init_volume("pw", {"--cipher", "aes256gcm"});
  auto cfg = load_config();
  cfg.cipher = CipherId::XChaCha20Poly1305;
  rewrite_config(cfg.serialize());
  auto r = run_veilkey(cat({"slot", "add", vol_}, kFastKdf), with_stdin("pw\nnew\n"));
  EXPECT_EQ(r.code, cli::kExitCorrupt) << r.err;
  EXPECT_EQ(run_veilkey({"export-key", vol_}, with_stdin("pw\n")).code, cli::kExitCorrupt);
}

}  // namespace
}  // namespace veil::test
