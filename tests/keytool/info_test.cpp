#include <nlohmann/json.hpp>

#include "fixture.hpp"
#include "veilfs/cli/exit_codes.hpp"

namespace veil::test {
namespace {

using InfoTest = KeytoolTest;

TEST_F(InfoTest, ShowsParametersAndSlotsWithoutAnySecret) {
  init_volume("a secret", {"--cipher", "xchacha20poly1305"});
  ASSERT_EQ(run_veilkey(
                cat({"slot", "add", vol_, "--passfile", passfile("a secret"), "--new-keyfile", write_file("k", "key")},
                    {"--kdf-memory", "131072", "--kdf-ops", "2"}))
                .code,
            0);
  auto r = run_veilkey({"info", vol_});  // empty stdin: no secret is read
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("format version: 1\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("cipher:         xchacha20poly1305\n"), std::string::npos);
  EXPECT_NE(r.out.find("block size:     4096\n"), std::string::npos);
  EXPECT_NE(r.out.find("authenticated-holes derived-dir-iv final-block-marker long-names"), std::string::npos);
  EXPECT_NE(r.out.find("key slots:      2\n"), std::string::npos);
  EXPECT_NE(r.out.find("slot 0: passphrase, argon2id opslimit=1 memlimit=65536\n"), std::string::npos);
  EXPECT_NE(r.out.find("slot 1: keyfile, argon2id opslimit=2 memlimit=131072\n"), std::string::npos);
  EXPECT_EQ(r.out.find("a secret"), std::string::npos);
}

TEST_F(InfoTest, JsonOutputParses) {
  init_volume("pw", {"--block-size", "65536"});
  auto r = run_veilkey({"info", vol_, "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.at("version"), 1);
  EXPECT_EQ(j.at("block_size"), 65536);
  EXPECT_EQ(j.at("cipher"), std::string(cipher_name(load_config().cipher)));
  ASSERT_EQ(j.at("key_slots").size(), 1u);
  EXPECT_EQ(j.at("key_slots")[0].at("kind"), "passphrase");
  EXPECT_EQ(j.at("key_slots")[0].at("memlimit"), 65536);
  EXPECT_EQ(j.at("features").size(), 4u);
}

TEST_F(InfoTest, EveryCommandHasHelpWithExamples) {
  for (auto cmd : std::vector<std::vector<std::string>>{{"init"},
                                                        {"passwd"},
                                                        {"slot", "list"},
                                                        {"slot", "add"},
                                                        {"slot", "remove"},
                                                        {"info"},
                                                        {"export-key"},
                                                        {"recover"}}) {
    auto r = run_veilkey(cat(cmd, {"--help"}));
    EXPECT_EQ(r.code, 0) << cmd[0];
    EXPECT_NE(r.out.find("Examples:"), std::string::npos) << cmd.back();
    EXPECT_NE(r.out.find("Usage: veilkey " + cmd[0]), std::string::npos) << cmd.back();
  }
  auto r = run_veilkey({"--help"});
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("Exit codes:"), std::string::npos);
  EXPECT_EQ(run_veilkey({}).code, cli::kExitUsage);
  EXPECT_EQ(run_veilkey({"frobnicate"}).code, cli::kExitUsage);
  EXPECT_EQ(run_veilkey({"info"}).code, cli::kExitUsage);  // missing CIPHERDIR
  EXPECT_EQ(run_veilkey({"info", vol_, "--no-such-option"}).code, cli::kExitUsage);
}

}  // namespace
}  // namespace veil::test
