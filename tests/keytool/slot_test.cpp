#include "fixture.hpp"
#include "veilfs/cli/exit_codes.hpp"

namespace veil::test {
namespace {

class SlotTest : public KeytoolTest {
 protected:
  RunResult add(const std::string& existing, const std::string& fresh) {
    return run_veilkey(
        cat({"slot", "add", vol_, "--passfile", passfile(existing), "--new-passfile", passfile(fresh)}, kFastKdf));
  }
};

TEST_F(SlotTest, AddPassphraseAndKeyFileSlotsThenListThem) {
  init_volume("one");
  ASSERT_EQ(add("one", "two").code, 0);
  std::string key(300, '\x7f');
  auto r =
      run_veilkey(cat({"slot", "add", vol_, "--new-keyfile", write_file("k", key)}, kFastKdf), with_stdin("two\n"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(opens("one"));
  EXPECT_TRUE(opens("two"));
  EXPECT_TRUE(opens(key));
  r = run_veilkey({"slot", "list", vol_});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "slot 0: passphrase, argon2id opslimit=1 memlimit=65536\n"
            "slot 1: passphrase, argon2id opslimit=1 memlimit=65536\n"
            "slot 2: keyfile, argon2id opslimit=1 memlimit=65536\n");
}

TEST_F(SlotTest, AddTakesExistingThenNewSecretFromStdinLines) {
  init_volume("one");
  auto r = run_veilkey(cat({"slot", "add", vol_}, kFastKdf), with_stdin("one\ntwo\n"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(opens("two"));
  EXPECT_EQ(load_config().slots.size(), 2u);
}

TEST_F(SlotTest, AddWithWrongSecretExits10AndAddsNothing) {
  init_volume("one");
  std::string before = config_text();
  EXPECT_EQ(add("nope", "two").code, cli::kExitWrongSecret);
  EXPECT_EQ(config_text(), before);
  EXPECT_FALSE(opens("two"));
}

TEST_F(SlotTest, AddDefaultsToTheStrongKdfAndRefusesBeyond32Slots) {
  init_volume("one");
  // The default (256 MiB) is what a real user gets; checked once here through the config, not by timing.
  auto r = run_veilkey({"slot", "add", vol_, "--passfile", passfile("one"), "--new-passfile", passfile("strong")});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(load_config().slots.back().kdf.memlimit, uint64_t{256} << 20);
  EXPECT_EQ(load_config().slots.back().kdf.opslimit, 3u);
  for (int i = 2; i < 32; ++i) ASSERT_EQ(add("one", numbered("p", i)).code, 0) << i;
  ASSERT_EQ(load_config().slots.size(), 32u);
  std::string before = config_text();
  EXPECT_EQ(add("one", "thirty-three").code, cli::kExitRefused);
  EXPECT_EQ(config_text(), before);
}

TEST_F(SlotTest, RemoveBySlotIdWithAnotherSecret) {
  init_volume("one");
  ASSERT_EQ(add("one", "two").code, 0);
  auto r = run_veilkey({"slot", "remove", vol_, "--slot", "0", "--passfile", passfile("two")});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_FALSE(opens("one"));
  EXPECT_TRUE(opens("two"));
  ASSERT_EQ(load_config().slots.size(), 1u);
  EXPECT_EQ(load_config().slots[0].id, 1u);
}

TEST_F(SlotTest, RemoveWithoutIdRemovesTheSlotTheSecretOpens) {
  init_volume("one");
  ASSERT_EQ(add("one", "two").code, 0);
  ASSERT_EQ(add("one", "three").code, 0);
  auto r = run_veilkey({"slot", "remove", vol_}, with_stdin("two\n"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(opens("one"));
  EXPECT_FALSE(opens("two"));
  EXPECT_TRUE(opens("three"));
}

TEST_F(SlotTest, RemovingTheLastSlotIsRefused) {
  init_volume("one");
  std::string before = config_text();
  auto r = run_veilkey({"slot", "remove", vol_, "--passfile", passfile("one")});
  EXPECT_EQ(r.code, cli::kExitRefused) << r.err;
  EXPECT_NE(r.err.find("last key slot"), std::string::npos);
  r = run_veilkey({"slot", "remove", vol_, "--slot", "0", "--passfile", passfile("one")});
  EXPECT_EQ(r.code, cli::kExitRefused);
  EXPECT_EQ(config_text(), before);
  EXPECT_TRUE(opens("one"));
}

TEST_F(SlotTest, RemoveNeedsASecretThatOpensSomeSlot) {
  init_volume("one");
  ASSERT_EQ(add("one", "two").code, 0);
  std::string before = config_text();
  EXPECT_EQ(run_veilkey({"slot", "remove", vol_, "--slot", "1", "--passfile", passfile("bad")}).code,
            cli::kExitWrongSecret);
  EXPECT_EQ(run_veilkey({"slot", "remove", vol_, "--slot", "7", "--passfile", passfile("one")}).code, cli::kExitUsage);
  EXPECT_EQ(config_text(), before);
}

TEST_F(SlotTest, UnknownSubcommandIsAUsageError) {
  init_volume("one");
  EXPECT_EQ(run_veilkey({"slot", "frobnicate", vol_}).code, cli::kExitUsage);
  EXPECT_EQ(run_veilkey({"slot"}).code, cli::kExitUsage);
}

}  // namespace
}  // namespace veil::test
