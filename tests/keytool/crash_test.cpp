// A veilkey killed at each step of a config change (VEILKEY_CRASH_AT, test-only) leaves a volume that the old
// secret or the new one opens -- exactly the old one before the rename, the new one from the rename on -- never
// neither, never a corrupt config, and no secret in any file it leaves behind.
#include <algorithm>

#include "fixture.hpp"
#include "veilfs/crypto/encoding.hpp"
#include "veilfs/format/recovery_code.hpp"

namespace veil::test {
namespace {

enum class Op { Passwd, SlotAdd, SlotRemove, Recover };

struct CrashCase {
  Op op;
  const char* stage;
  bool committed;  // whether the change must be visible after the crash
};

void PrintTo(const CrashCase& c, std::ostream* os) { *os << c.stage << (c.committed ? " (committed)" : ""); }

std::string name_of(const ::testing::TestParamInfo<CrashCase>& info) {
  static const char* ops[] = {"Passwd", "SlotAdd", "SlotRemove", "Recover"};
  std::string s = std::string(ops[static_cast<int>(info.param.op)]) + "_" + info.param.stage;
  std::replace(s.begin(), s.end(), '-', '_');
  return s;
}

class CrashTest : public KeytoolTest, public ::testing::WithParamInterface<CrashCase> {
 protected:
  // Distinctive secrets, so that finding them in a file cannot be a coincidence.
  const std::string old_ = "old-passphrase-Qz7wX1", new_ = "new-passphrase-Kp4rN8", other_ = "other-pass-Vb2mT5";

  std::vector<std::string> command(Op op) {
    switch (op) {
      case Op::Passwd:
        return {"passwd", vol_, "--passfile", passfile(old_), "--new-passfile", passfile(new_)};
      case Op::SlotAdd:
        return cat({"slot", "add", vol_, "--passfile", passfile(old_), "--new-passfile", passfile(new_)}, kFastKdf);
      case Op::SlotRemove:
        return {"slot", "remove", vol_, "--slot", "0", "--passfile", passfile(other_)};
      case Op::Recover:
        return cat(
            {"recover", vol_, "--recovery-code-file", write_file("code", code_), "--new-passfile", passfile(new_)},
            kFastKdf);
    }
    return {};
  }

  void check_state(Op op, bool committed) {
    auto cfg = load_config();  // throws (fails the test) if the config is corrupt
    bool old_opens = opens(old_), new_opens = opens(new_);
    if (op != Op::SlotRemove) {
      EXPECT_TRUE(old_opens || new_opens) << "neither secret opens the volume";
    }
    switch (op) {
      case Op::Passwd:
        EXPECT_EQ(old_opens, !committed);
        EXPECT_EQ(new_opens, committed);
        break;
      case Op::SlotAdd:
      case Op::Recover:
        EXPECT_TRUE(old_opens);
        EXPECT_EQ(new_opens, committed);
        break;
      case Op::SlotRemove:
        EXPECT_EQ(old_opens, !committed);
        EXPECT_TRUE(opens(other_));
        break;
    }
  }

  std::string code_;
};

TEST_P(CrashTest, OldOrNewSecretWorksAfterACrashAtEveryStep) {
  const auto& p = GetParam();
  code_ = init_volume(old_);
  if (p.op == Op::SlotRemove) {
    auto added = run_veilkey(
        cat({"slot", "add", vol_, "--passfile", passfile(old_), "--new-passfile", passfile(other_)}, kFastKdf));
    ASSERT_EQ(added.code, 0) << added.err;
  }
  SecretBytes master = master_of(old_);
  const std::string before = config_text();

  auto r = run_veilkey(command(p.op), {.stdin_data = "", .env = {{"VEILKEY_CRASH_AT", p.stage}}, .inherit_fds = {}});
  ASSERT_EQ(r.code, 99) << "the crash point was not reached: " << r.err;
  if (!p.committed) {
    EXPECT_EQ(config_text(), before);
  }
  check_state(p.op, p.committed);

  // Whatever was left behind (a temp config after "after-temp") holds no secret in any form.
  std::string disk = all_cipher_dir_bytes();
  for (const std::string& secret : {old_, new_, other_, code_, base64url_encode(master.span()),
                                    hex_encode(master.span()), std::string(master.view())})
    EXPECT_EQ(disk.find(secret), std::string::npos);
  bool temp_left = false;
  for (const auto& n : cipher_dir_names()) temp_left |= n.starts_with("veilfs.conf.tmp.");
  EXPECT_EQ(temp_left, std::string(p.stage) == "after-temp");

  // Running the command again completes the change (or, if it was committed, is judged on its own) and
  // sweeps the stale temp file.
  if (!p.committed) {
    r = run_veilkey(command(p.op));
    ASSERT_EQ(r.code, 0) << r.err;
    check_state(p.op, true);
    for (const auto& n : cipher_dir_names()) EXPECT_FALSE(n.starts_with("veilfs.conf.tmp.")) << n;
  }
}

std::vector<CrashCase> all_cases() {
  std::vector<CrashCase> v;
  for (Op op : {Op::Passwd, Op::SlotAdd, Op::SlotRemove, Op::Recover})
    for (auto [stage, committed] : std::vector<std::pair<const char*, bool>>{
             {"locked", false}, {"unlocked", false}, {"after-temp", false}, {"after-rename", true}, {"saved", true}})
      v.push_back({op, stage, committed});
  return v;
}

INSTANTIATE_TEST_SUITE_P(EveryStep, CrashTest, ::testing::ValuesIn(all_cases()), name_of);

}  // namespace
}  // namespace veil::test
