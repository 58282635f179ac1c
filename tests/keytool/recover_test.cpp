// veilkey export-key and recover, through the binary.
#include <algorithm>

#include "fixture.hpp"
#include "veilfs/cli/exit_codes.hpp"

namespace veil::test {
namespace {

class RecoverTest : public KeytoolTest {
 protected:
  RunResult recover_with(const std::string& code, const std::string& new_pass) {
    return run_veilkey(cat({"recover", vol_, "--recovery-code-file", write_file("code.txt", code + "\n"),
                            "--new-passfile", passfile(new_pass)},
                           kFastKdf));
  }
};

TEST_F(RecoverTest, ExportKeyPrintsTheSameCodeAsInit) {
  std::string code = init_volume("pw");
  auto r = run_veilkey({"export-key", vol_, "--passfile", passfile("pw")});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, code + "\n");
  EXPECT_EQ(r.err.find(code), std::string::npos);
}

TEST_F(RecoverTest, ExportKeyWithWrongPassphraseExits10AndPrintsNothing) {
  init_volume("pw");
  auto r = run_veilkey({"export-key", vol_}, with_stdin("not pw\n"));
  EXPECT_EQ(r.code, cli::kExitWrongSecret);
  EXPECT_EQ(r.out, "");
}

TEST_F(RecoverTest, RecoverAddsANewPassphraseSlot) {
  std::string code = init_volume("forgotten");
  auto r = recover_with(code, "fresh");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(opens("fresh"));
  EXPECT_TRUE(opens("forgotten"));  // recover adds; removing the old slot is a separate, deliberate step
  EXPECT_EQ(load_config().slots.size(), 2u);
  EXPECT_EQ(load_config().slots.back().kind, format::SlotKind::Passphrase);
}

TEST_F(RecoverTest, RecoverReadsCodeThenNewPassphraseFromStdinForgivingCaseAndDashes) {
  std::string code = init_volume("forgotten");
  std::string sloppy;
  for (char c : code)
    if (c != '-') sloppy += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  sloppy.insert(10, "  ");
  auto r = run_veilkey(cat({"recover", vol_}, kFastKdf), with_stdin(sloppy + "\nfresh\n"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(opens("fresh"));
}

TEST_F(RecoverTest, TypoIsCaughtWithItsGroupAndDistinctExitCode) {
  std::string code = init_volume("pw");
  std::string before = config_text();
  // Change one character of group 4 (characters 24..30 including dashes at 7, 15, 23).
  std::string typo = code;
  typo[26] = typo[26] == 'A' ? 'B' : 'A';
  auto r = recover_with(typo, "fresh");
  EXPECT_EQ(r.code, cli::kExitCodeTypo) << r.err;
  EXPECT_NE(r.err.find("group 4"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find(code.substr(24, 7)), std::string::npos);  // the code itself is never echoed
  EXPECT_EQ(r.err.find(typo.substr(24, 7)), std::string::npos);
  EXPECT_EQ(config_text(), before);
  EXPECT_FALSE(opens("fresh"));

  // Two neighbours swapped, a missing character, a character outside the alphabet.
  std::string swapped = code;
  size_t i = 0;
  while (swapped[i] == swapped[i + 1]) ++i;
  std::swap(swapped[i], swapped[i + 1]);
  EXPECT_EQ(recover_with(swapped, "fresh").code, cli::kExitCodeTypo);
  EXPECT_EQ(recover_with(code.substr(1), "fresh").code, cli::kExitCodeTypo);
  std::string bad_char = code;
  bad_char[3] = 'U';
  EXPECT_EQ(recover_with(bad_char, "fresh").code, cli::kExitCodeTypo);
  EXPECT_EQ(config_text(), before);
}

TEST_F(RecoverTest, CodeOfAnotherVolumeIsAWrongSecret) {
  std::string mine = init_volume("pw");
  std::string other_vol = vol_;
  vol_ = root_ + "/other";
  std::string theirs = init_volume("pw2");
  vol_ = other_vol;
  std::string before = config_text();
  auto r = recover_with(theirs, "fresh");
  EXPECT_EQ(r.code, cli::kExitWrongSecret) << r.err;
  EXPECT_EQ(config_text(), before);
  EXPECT_NE(mine, theirs);
}

}  // namespace
}  // namespace veil::test
