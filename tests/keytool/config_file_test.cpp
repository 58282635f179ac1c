// A config kept outside the cipher dir (--config FILE on every command), veilfs.params, and recreating a lost
// config from the recovery code (veilkey recover). Through the binary; results checked through the core library.
#include <algorithm>
#include <filesystem>

#include "fixture.hpp"
#include "veilfs/cli/exit_codes.hpp"

namespace veil::test {
namespace {

class ConfigFileTest : public KeytoolTest {
 protected:
  std::string conf() const { return root_ + "/elsewhere/vault.conf"; }
  format::VolumeConfig load_external() const {
    const auto slash = conf().rfind('/');
    UniqueFd dir(::open(conf().substr(0, slash).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    return layout::load_config(dir.get(), conf().substr(slash + 1));
  }
  std::optional<format::VolumeConfig> load_params() const {
    UniqueFd dir(::open(vol_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    return layout::load_params(dir.get());
  }
  RunResult recover(const std::string& code, const std::string& new_pass, std::vector<std::string> extra = {}) {
    return run_veilkey(cat(cat({"recover", vol_, "--recovery-code-file", write_file("code.txt", code + "\n"),
                                "--new-passfile", passfile(new_pass)},
                               kFastKdf),
                           extra));
  }
};

TEST_F(ConfigFileTest, InitWithConfigKeepsTheKeySlotsOutOfTheCipherDir) {
  std::filesystem::create_directories(root_ + "/elsewhere");
  const std::string code = init_volume("pw", {"--config", conf()});
  ASSERT_FALSE(code.empty());
  EXPECT_EQ(cipher_dir_names(), (std::vector<std::string>{"veilfs.diriv", "veilfs.params"}));
  const auto cfg = load_external();
  ASSERT_EQ(cfg.slots.size(), 1u);
  const auto params = load_params();
  ASSERT_TRUE(params);
  EXPECT_TRUE(params->slots.empty());
  EXPECT_EQ(params->volume_id, cfg.volume_id);
  EXPECT_EQ(params->params_mac, cfg.params_mac);
  EXPECT_EQ(all_cipher_dir_bytes().find("wrapped_key"), std::string::npos);
  SecretBytes master = cfg.unlock(bytes_of("pw"));
  EXPECT_NO_THROW(params->verify_params(master));

  // Every command finds it with --config; without, it says where to look (exit 11).
  auto r = run_veilkey({"info", vol_, "--config", conf()});
  EXPECT_EQ(r.code, 0) << r.err;
  r = run_veilkey({"info", vol_});
  EXPECT_EQ(r.code, cli::kExitNotVolume);
  EXPECT_NE(r.err.find("kept elsewhere"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--config FILE"), std::string::npos) << r.err;

  r = run_veilkey(cat(
      {"passwd", vol_, "--config", conf(), "--passfile", passfile("pw"), "--new-passfile", passfile("pw2")}, kFastKdf));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NO_THROW(load_external().unlock(bytes_of("pw2")));
  r = run_veilkey(
      cat({"slot", "add", vol_, "--config", conf(), "--passfile", passfile("pw2"), "--new-passfile", passfile("pw3")},
          kFastKdf));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(load_external().slots.size(), 2u);
  EXPECT_EQ(cipher_dir_names(), (std::vector<std::string>{"veilfs.diriv", "veilfs.params"}))
      << "changes go to the external config only";
  r = run_veilkey({"export-key", vol_, "--config", conf(), "--passfile", passfile("pw3")});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, code + "\n");
}

TEST_F(ConfigFileTest, InitNeverWritesOverAnExistingConfigFile) {
  std::filesystem::create_directories(root_ + "/elsewhere");
  write_file("elsewhere/vault.conf", "my own file\n");
  auto r = run_veilkey(cat({"init", vol_, "--config", conf(), "--passfile", passfile("pw")}, kFastKdf));
  EXPECT_EQ(r.code, cli::kExitRefused) << r.err;
  EXPECT_NE(r.err.find("exists already"), std::string::npos) << r.err;
  std::ifstream in(conf());
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), "my own file\n");
  EXPECT_FALSE(std::filesystem::exists(vol_)) << "nothing is left behind";
  // Its directory must exist: a clear error, nothing left either.
  r = run_veilkey(
      cat({"init", vol_, "--config", root_ + "/no/such/dir/x.conf", "--passfile", passfile("pw")}, kFastKdf));
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("no/such/dir"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(vol_)) << r.err;
}

TEST_F(ConfigFileTest, RecoverRecreatesALostConfigFromTheParamsFile) {
  const std::string code = init_volume("forgotten");
  const auto before = load_config();
  std::filesystem::remove(vol_ + "/veilfs.conf");
  auto r = run_veilkey({"info", vol_});
  EXPECT_EQ(r.code, cli::kExitNotVolume);
  EXPECT_NE(r.err.find("recovery code"), std::string::npos) << r.err;

  r = recover(code, "fresh");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("the config was missing"), std::string::npos) << r.err;
  const auto after = load_config();
  ASSERT_EQ(after.slots.size(), 1u);
  EXPECT_EQ(after.volume_id, before.volume_id);
  EXPECT_EQ(after.cipher, before.cipher);
  EXPECT_EQ(after.block_size, before.block_size);
  EXPECT_TRUE(opens("fresh"));
  EXPECT_FALSE(opens("forgotten")) << "its slot was in the lost config";
  EXPECT_EQ(master_of("fresh").view(), before.unlock(bytes_of("forgotten")).view());
}

TEST_F(ConfigFileTest, RecoverIntoAnExternalConfigAndRefusalsThatWriteNothing) {
  const std::string code = init_volume("pw");
  std::filesystem::remove(vol_ + "/veilfs.conf");
  std::filesystem::create_directories(root_ + "/elsewhere");
  // Recreated where --config says (the user is moving the config out of the synced dir).
  auto r = recover(code, "fresh", {"--config", conf()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NO_THROW(load_external().unlock(bytes_of("fresh")));
  EXPECT_FALSE(std::filesystem::exists(vol_ + "/veilfs.conf"));
  std::filesystem::remove(conf());

  // Another volume's code: exit 10, nothing written.
  const std::string vol_a = vol_;
  vol_ = root_ + "/other";
  const std::string other_code = init_volume("pw");
  vol_ = vol_a;
  r = recover(other_code, "fresh");
  EXPECT_EQ(r.code, cli::kExitWrongSecret) << r.err;
  EXPECT_FALSE(std::filesystem::exists(vol_ + "/veilfs.conf"));

  // A damaged params file: exit 13, named; nothing written.
  {
    std::filesystem::permissions(vol_ + "/veilfs.params", std::filesystem::perms::owner_write,
                                 std::filesystem::perm_options::add);
    std::fstream f(vol_ + "/veilfs.params", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(40);
    f.put('#');
  }
  r = recover(code, "fresh");
  EXPECT_EQ(r.code, cli::kExitCorrupt) << r.err;
  EXPECT_NE(r.err.find("veilfs.params"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(vol_ + "/veilfs.conf"));

  // Neither config nor params: exit 11, saying so.
  std::filesystem::remove(vol_ + "/veilfs.params");
  r = recover(code, "fresh");
  EXPECT_EQ(r.code, cli::kExitNotVolume) << r.err;
  EXPECT_NE(r.err.find("veilfs.params"), std::string::npos) << r.err;
}

TEST_F(ConfigFileTest, AVolumeWithoutParamsGetsThemFromTheNextSavedConfig) {
  init_volume("pw");
  const auto cfg = load_config();
  std::filesystem::remove(vol_ + "/veilfs.params");  // as volumes made before veilfs.params existed
  auto r =
      run_veilkey(cat({"passwd", vol_, "--passfile", passfile("pw"), "--new-passfile", passfile("pw2")}, kFastKdf));
  ASSERT_EQ(r.code, 0) << r.err;
  const auto params = load_params();
  ASSERT_TRUE(params);
  EXPECT_EQ(params->volume_id, cfg.volume_id);
  EXPECT_EQ(params->params_mac, cfg.params_mac);
  EXPECT_TRUE(params->slots.empty());
}

}  // namespace
}  // namespace veil::test

namespace veil::test {
namespace {

// veilkey init --reverse: a plain directory becomes a reverse volume; only its config is written.
class ReverseInitTest : public KeytoolTest {};

TEST_F(ReverseInitTest, WritesOnlyTheReverseConfigAndNeverOverAnother) {
  std::filesystem::create_directories(vol_ + "/docs");
  write_file("vol/docs/a.txt", "plain\n");
  const auto before = cipher_dir_names();
  const std::string code = init_volume("pw", {"--reverse"});
  EXPECT_FALSE(code.empty()) << "a recovery code, as for any volume";
  auto after = cipher_dir_names();
  after.erase(std::remove(after.begin(), after.end(), ".veilfs.reverse.conf"), after.end());
  EXPECT_EQ(after, before) << "nothing else in the plain directory changes";
  const std::string conf = vol_ + "/.veilfs.reverse.conf";
  ASSERT_TRUE(std::filesystem::exists(conf));
  auto r = run_veilkey({"info", vol_, "--config", conf});
  EXPECT_EQ(r.code, 0) << r.err;
  // A second init: refused, the config untouched.
  std::ifstream in(conf);
  const std::string text(std::istreambuf_iterator<char>(in), {});
  r = run_veilkey(cat({"init", vol_, "--reverse", "--passfile", passfile("other")}, kFastKdf));
  EXPECT_EQ(r.code, cli::kExitRefused) << r.err;
  std::ifstream again(conf);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(again), {}), text);
  // A plain directory that does not exist: refused, nothing created.
  r = run_veilkey(cat({"init", root_ + "/missing", "--reverse", "--passfile", passfile("pw")}, kFastKdf));
  EXPECT_EQ(r.code, cli::kExitRefused) << r.err;
  EXPECT_FALSE(std::filesystem::exists(root_ + "/missing"));
}

}  // namespace
}  // namespace veil::test
