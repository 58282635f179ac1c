// No passphrase, key-file content, master key or recovery code reaches an error message, a log line or a file
// in the cipher dir, whether the command succeeds or fails.
#include "fixture.hpp"
#include "veilfs/crypto/encoding.hpp"

namespace veil::test {
namespace {

using SecretsTest = KeytoolTest;

TEST_F(SecretsTest, NoSecretInAnyMessageOrFile) {
  const std::string p1 = "first-Secret-Hj3k9", p2 = "second-Secret-Lm5q2", p3 = "third-Secret-Wc8x4",
                    key = "keyfile-Secret-Rt6y1", wrong = "wrong-Secret-Zu7i0";
  std::vector<RunResult> runs;
  auto run = [&](std::vector<std::string> args, std::string in = "") {
    runs.push_back(run_veilkey(args, with_stdin(in)));
    return runs.back();
  };
  std::string code = init_volume(p1);
  run({"passwd", vol_}, wrong + "\n" + p2 + "\n");
  run({"passwd", vol_}, p1 + "\n" + p2 + "\n");
  run(cat({"slot", "add", vol_, "--new-keyfile", write_file("key", key)}, kFastKdf), p2 + "\n");
  run(cat({"slot", "add", vol_, "--keyfile", write_file("wrongkey", wrong)}, kFastKdf), p3 + "\n");
  run({"slot", "remove", vol_, "--slot", "0"}, wrong + "\n");
  std::string typo = code;
  typo[0] = typo[0] == 'A' ? 'B' : 'A';
  run(cat({"recover", vol_}, kFastKdf), typo + "\n" + p3 + "\n");
  run(cat({"recover", vol_}, kFastKdf), code + "\n" + p3 + "\n");
  run({"export-key", vol_}, wrong + "\n");
  auto exported = run({"export-key", vol_}, p3 + "\n");
  const size_t exported_at = runs.size() - 1;
  run({"info", vol_});
  run({"slot", "list", vol_});

  ASSERT_EQ(exported.out, code + "\n");
  EXPECT_TRUE(opens(p2));
  EXPECT_TRUE(opens(key));
  EXPECT_TRUE(opens(p3));
  SecretBytes master = master_of(p3);
  const std::vector<std::string> secrets{
      p1, p2, p3, key, wrong, code, typo, base64url_encode(master.span()), hex_encode(master.span())};
  for (const auto& r : runs)
    for (const auto& s : secrets) EXPECT_EQ(r.err.find(s), std::string::npos) << r.err;
  for (const auto& r : runs) {
    if (&r == &runs[exported_at]) continue;  // export-key prints the code, and only on stdout
    for (const auto& s : secrets) EXPECT_EQ(r.out.find(s), std::string::npos) << r.out;
  }
  std::string disk = all_cipher_dir_bytes();
  for (const auto& s : secrets) EXPECT_EQ(disk.find(s), std::string::npos);
  EXPECT_EQ(disk.find(std::string(master.view())), std::string::npos);
}

}  // namespace
}  // namespace veil::test
