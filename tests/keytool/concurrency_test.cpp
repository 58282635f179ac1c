// Two veilkey commands on one volume at once must not lose a slot: they take turns on the config lock.
#include <poll.h>
#include <unistd.h>

#include <memory>

#include "fixture.hpp"

namespace veil::test {
namespace {

// A pipe whose read end the test polls for the stage names a child reports (VEILKEY_TEST_EVENT_FD).
struct EventPipe {
  int rd = -1, wr = -1;
  EventPipe() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
    rd = fds[0];
    wr = fds[1];
  }
  ~EventPipe() {
    close_write();
    if (rd >= 0) ::close(rd);
  }
  void close_write() {
    if (wr >= 0) ::close(wr);
    wr = -1;
  }
  // Reads lines until `stage` arrives. False if the writer exits first or nothing comes for a minute (a hang).
  bool wait_for(const std::string& stage) {
    std::string line;
    for (;;) {
      pollfd p{rd, POLLIN, 0};
      if (::poll(&p, 1, 60'000) <= 0) return false;
      char c;
      if (::read(rd, &c, 1) != 1) return false;
      if (c != '\n') {
        line += c;
        continue;
      }
      if (line == stage) return true;
      line.clear();
    }
  }
};

using ConcurrencyTest = KeytoolTest;

TEST_F(ConcurrencyTest, SecondSlotAddWaitsForTheFirstAndBothSlotsSurvive) {
  init_volume("base");
  EventPipe a_events, b_events, resume_a;
  // A stops while it holds the lock, having loaded the config.
  auto a = std::make_unique<Child>(
      cat({"slot", "add", vol_, "--passfile", passfile("base"), "--new-passfile", passfile("from-a")}, kFastKdf),
      RunOptions{.stdin_data = "",
                 .env = {{"VEILKEY_TEST_EVENT_FD", std::to_string(a_events.wr)},
                         {"VEILKEY_TEST_PAUSE_AT", "locked"},
                         {"VEILKEY_TEST_RESUME_FD", std::to_string(resume_a.rd)}},
                 .inherit_fds = {a_events.wr, resume_a.rd}});
  a_events.close_write();
  ASSERT_TRUE(a_events.wait_for("locked"));
  // B, started now, must find the lock taken: it reports that before it blocks. Without a lock it would load
  // the same config as A and one of the two slots would be lost when the other saved.
  auto b = std::make_unique<Child>(
      cat({"slot", "add", vol_, "--passfile", passfile("base"), "--new-passfile", passfile("from-b")}, kFastKdf),
      RunOptions{.stdin_data = "",
                 .env = {{"VEILKEY_TEST_EVENT_FD", std::to_string(b_events.wr)}},
                 .inherit_fds = {b_events.wr}});
  b_events.close_write();
  ASSERT_TRUE(b_events.wait_for("lock-contended"));
  ASSERT_EQ(::write(resume_a.wr, "x", 1), 1);
  auto ra = a->wait(), rb = b->wait();
  ASSERT_EQ(ra.code, 0) << ra.err;
  ASSERT_EQ(rb.code, 0) << rb.err;
  EXPECT_EQ(load_config().slots.size(), 3u);
  EXPECT_TRUE(opens("base"));
  EXPECT_TRUE(opens("from-a"));
  EXPECT_TRUE(opens("from-b"));
}

TEST_F(ConcurrencyTest, ManyConcurrentCommandsLoseNothing) {
  init_volume("base");
  ASSERT_EQ(run_veilkey(cat({"slot", "add", vol_, "--passfile", passfile("base"), "--new-passfile", passfile("doomed")},
                            kFastKdf))
                .code,
            0);
  // Four adds and a remove, started together, unsynchronised.
  const std::vector<std::string> names{"p0", "p1", "p2", "p3"};
  std::vector<std::unique_ptr<Child>> kids;
  for (int i = 0; i < 4; ++i)
    kids.push_back(std::make_unique<Child>(
        cat({"slot", "add", vol_, "--passfile", passfile("base"), "--new-passfile", passfile(names[i])}, kFastKdf),
        RunOptions{}));
  kids.push_back(std::make_unique<Child>(
      std::vector<std::string>{"slot", "remove", vol_, "--passfile", passfile("doomed")}, RunOptions{}));
  for (auto& k : kids) {
    auto r = k->wait();
    EXPECT_EQ(r.code, 0) << r.err;
  }
  EXPECT_EQ(load_config().slots.size(), 5u);
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(opens(names[i])) << i;
  EXPECT_FALSE(opens("doomed"));
  EXPECT_TRUE(opens("base"));
}

}  // namespace
}  // namespace veil::test
