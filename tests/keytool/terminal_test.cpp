// On a terminal veilkey prompts (without echo) and asks for every new secret twice. Driven through a pty.
#include <poll.h>
#include <pty.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "fixture.hpp"
#include "veilfs/cli/exit_codes.hpp"

namespace veil::test {
namespace {

// veilkey running with a pseudo-terminal as its controlling terminal and stdin/stdout/stderr.
class PtySession {
 public:
  explicit PtySession(const std::vector<std::string>& args) {
    std::vector<std::string> argv_s{veilkey_path()};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& s : argv_s) argv.push_back(s.data());
    argv.push_back(nullptr);
    pid_ = ::forkpty(&master_, nullptr, nullptr, nullptr);
    if (pid_ < 0) throw std::runtime_error("forkpty");
    if (pid_ == 0) {
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
  }
  ~PtySession() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      finish();
    }
    if (master_ >= 0) ::close(master_);
  }
  // Reads until `text` has appeared in the output; false on EOF or a minute of silence (a hang).
  bool expect(const std::string& text) {
    for (;;) {
      if (seen_.find(text, consumed_) != std::string::npos) {
        consumed_ = seen_.find(text, consumed_) + text.size();
        return true;
      }
      pollfd p{master_, POLLIN, 0};
      if (::poll(&p, 1, 60'000) <= 0) return false;
      char buf[256];
      ssize_t n = ::read(master_, buf, sizeof buf);
      if (n <= 0) return false;
      seen_.append(buf, static_cast<size_t>(n));
    }
  }
  // Waits for a prompt, then for the terminal's echo to go off. veilkey turns echo off with TCSAFLUSH *after*
  // printing the prompt, which discards anything typed before that instant: typing must wait for it (the
  // master side of a pty reports the terminal's settings).
  bool prompt(const std::string& text) {
    if (!expect(text)) return false;
    for (int i = 0; i < 60'000; ++i) {
      termios t{};
      if (::tcgetattr(master_, &t) != 0) return false;
      if (!(t.c_lflag & ECHO)) return true;
      ::usleep(1000);  // re-checks the condition itself; no fixed delay stands in for it
    }
    return false;
  }
  void type(const std::string& line) { ASSERT_EQ(::write(master_, line.data(), line.size()), (ssize_t)line.size()); }
  // Drains the output and returns the exit code.
  int finish() {
    char buf[256];
    for (;;) {
      pollfd p{master_, POLLIN, 0};
      if (::poll(&p, 1, 60'000) <= 0) {
        ::kill(pid_, SIGKILL);  // still waiting for input after a minute: a failed test, not a hang
        break;
      }
      ssize_t n = ::read(master_, buf, sizeof buf);
      if (n <= 0) break;  // EIO once the child has closed the terminal
      seen_.append(buf, static_cast<size_t>(n));
    }
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  const std::string& output() const { return seen_; }

 private:
  pid_t pid_ = -1;
  int master_ = -1;
  std::string seen_;
  size_t consumed_ = 0;
};

using TerminalTest = KeytoolTest;

TEST_F(TerminalTest, InitAsksTwiceWithoutEchoAndPrintsTheCode) {
  PtySession s(cat({"init", vol_}, kFastKdf));
  ASSERT_TRUE(s.prompt("New passphrase: ")) << s.output();
  s.type("typed-secret-Gh5\n");
  ASSERT_TRUE(s.prompt("Repeat: ")) << s.output();
  s.type("typed-secret-Gh5\n");
  EXPECT_EQ(s.finish(), 0) << s.output();
  EXPECT_EQ(s.output().find("typed-secret-Gh5"), std::string::npos) << "the passphrase was echoed";
  EXPECT_TRUE(opens("typed-secret-Gh5"));
  EXPECT_NE(s.output().find("recovery code"), std::string::npos);
}

TEST_F(TerminalTest, MismatchedRepeatCreatesNothing) {
  PtySession s(cat({"init", vol_}, kFastKdf));
  ASSERT_TRUE(s.prompt("New passphrase: "));
  s.type("one\n");
  ASSERT_TRUE(s.prompt("Repeat: "));
  s.type("two\n");
  EXPECT_EQ(s.finish(), cli::kExitUsage);
  EXPECT_NE(s.output().find("do not match"), std::string::npos) << s.output();
  EXPECT_FALSE(std::filesystem::exists(vol_ + "/veilfs.conf"));
}

TEST_F(TerminalTest, EmptyPassphraseIsRefusedBeforeTheRepeat) {
  PtySession s(cat({"init", vol_}, kFastKdf));
  ASSERT_TRUE(s.prompt("New passphrase: "));
  s.type("\n");
  EXPECT_EQ(s.finish(), cli::kExitUsage) << s.output();
  EXPECT_NE(s.output().find("empty passphrase"), std::string::npos) << s.output();
  EXPECT_EQ(s.output().find("Repeat: "), std::string::npos) << "an empty passphrase was asked for again";
  EXPECT_FALSE(std::filesystem::exists(vol_)) << "the directory init created is left behind";
}

TEST_F(TerminalTest, PasswdAsksOldOnceAndNewTwice) {
  init_volume("old-Ty7");
  PtySession s({"passwd", vol_});
  ASSERT_TRUE(s.prompt("Passphrase: "));
  s.type("old-Ty7\n");
  ASSERT_TRUE(s.prompt("New passphrase: "));
  s.type("new-Ty7\n");
  ASSERT_TRUE(s.prompt("Repeat: "));
  s.type("new-Ty7\n");
  EXPECT_EQ(s.finish(), 0) << s.output();
  EXPECT_TRUE(opens("new-Ty7"));
  EXPECT_FALSE(opens("old-Ty7"));
}

TEST_F(TerminalTest, RecoverPromptsForTheCode) {
  std::string code = init_volume("lost");
  PtySession s(cat({"recover", vol_}, kFastKdf));
  ASSERT_TRUE(s.prompt("Recovery code: "));
  s.type(code + "\n");
  ASSERT_TRUE(s.prompt("New passphrase: "));
  s.type("found\n");
  ASSERT_TRUE(s.prompt("Repeat: "));
  s.type("found\n");
  EXPECT_EQ(s.finish(), 0) << s.output();
  EXPECT_EQ(s.output().find(code), std::string::npos) << "the recovery code was echoed";
  EXPECT_TRUE(opens("found"));
}

}  // namespace
}  // namespace veil::test
