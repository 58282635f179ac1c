// Self-tests of the crash explorer: the persistence model and the replay on hand-made logs (no mount), the
// content rule, the expectations' bookkeeping, and every check of a crash state catching an injected bad state
// (on a copy of a real volume a short workload left).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/fs.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <random>
#include <set>
#include <string>

#include "common/daemon_harness.hpp"
#include "explorer.hpp"
#include "replay.hpp"
#include "veilfs/layout/cipher_dir.hpp"

namespace veil::crash {
namespace {

// --- hand-made logs -----------------------------------------------------------------------------------------

constexpr uint64_t kRoot = 1;

Tree empty_tree() {
  Tree t;
  t.root = kRoot;
  t.nodes[kRoot].type = S_IFDIR;
  t.nodes[kRoot].perm = 0755;
  return t;
}

struct LogBuilder {
  std::string bytes;
  int marks = 0;
  void add(Record r) { encode(r, bytes); }
  void mark() {
    Record r;
    r.op = Op::Mark;
    r.off = static_cast<uint64_t>(marks++);
    r.call = "step";
    add(r);
  }
  void create(uint64_t dir, const std::string& name, uint64_t ino, mode_t type = S_IFREG) {
    Record r;
    r.op = Op::Create;
    r.dir = dir;
    r.name = name;
    r.ino = ino;
    r.mode = type | 0644;
    r.call = "create";
    add(r);
  }
  void write(uint64_t ino, uint64_t off, const std::string& data) {
    Record r;
    r.op = Op::Write;
    r.ino = ino;
    r.off = off;
    r.data = data;
    r.call = "pwrite";
    add(r);
  }
  void fsync(uint64_t ino, bool dir = false) {
    Record r;
    r.op = Op::Fsync;
    r.ino = ino;
    r.is_dir = dir;
    r.call = "fsync";
    add(r);
  }
  void rename(uint64_t d1, const std::string& a, uint64_t d2, const std::string& b, uint64_t ino, uint64_t ino2 = 0,
              unsigned flags = 0) {
    Record r;
    r.op = Op::Rename;
    r.dir = d1;
    r.name = a;
    r.dir2 = d2;
    r.name2 = b;
    r.ino = ino;
    r.ino2 = ino2;
    r.flags = flags;
    r.call = "renameat2";
    add(r);
  }
  void unlink(uint64_t dir, const std::string& name, uint64_t ino) {
    Record r;
    r.op = Op::Unlink;
    r.dir = dir;
    r.name = name;
    r.ino = ino;
    r.call = "unlinkat";
    add(r);
  }
};

// The names in the root of t, and the contents of each file there.
std::map<std::string, std::string> root_files(const Tree& t) {
  std::map<std::string, std::string> out;
  for (const auto& [name, id] : t.nodes.at(t.root).entries) out[name] = t.nodes.at(id).data;
  return out;
}

TEST(CrashModel, BarriersForceExactlyWhatTheyCover) {
  LogBuilder b;
  b.mark();                  // #0: baseline
  b.create(kRoot, "a", 10);  // #1 forced by the directory fsync #4
  b.write(10, 0, "hello");   // #2 forced by the file fsync #3
  b.fsync(10);               // #3
  b.fsync(kRoot, true);      // #4
  b.create(kRoot, "b", 11);  // #5 never forced
  b.write(11, 0, "world");   // #6 never forced
  b.fsync(11);               // #7 forces #6, not the name #5
  Log log = parse_log(empty_tree(), b.bytes, 0);
  ASSERT_EQ(log.ops.size(), 8u);
  EXPECT_EQ(log.baseline, 1u);
  const auto f = forced_at(log);
  EXPECT_EQ(f[1], 4u);
  EXPECT_EQ(f[2], 3u);
  EXPECT_EQ(f[5], 8u) << "an fsync of a file does not persist its name";
  EXPECT_EQ(f[6], 7u);
  EXPECT_TRUE(droppable(log, f, 2, 3));
  EXPECT_FALSE(droppable(log, f, 2, 4));
  EXPECT_TRUE(droppable(log, f, 1, 4));
  EXPECT_FALSE(droppable(log, f, 1, 5));
  EXPECT_TRUE(droppable(log, f, 5, 8));
  EXPECT_FALSE(droppable(log, f, 3, 8)) << "barriers are not state";
}

TEST(CrashModel, StatesAreEveryPrefixAndEveryPrefixMinusOneUnforcedOperation) {
  LogBuilder b;
  b.mark();
  b.create(kRoot, "a", 10);
  b.write(10, 0, "one");
  b.fsync(10);
  b.fsync(kRoot, true);
  b.write(10, 0, "two");
  b.create(kRoot, "b", 11);
  Log log = parse_log(empty_tree(), b.bytes, 0);
  size_t candidates = 0;
  const auto states = crash_states(log, ExploreLimits{100000, 0, 1}, &candidates);
  std::set<std::map<std::string, std::string>> seen;
  for (const auto& s : states) {
    const Tree t = build_state(log, s.state);
    const auto files = root_files(t);
    seen.insert(files);
    // Once the barriers returned, "a" holds "one" or (later) "two", never less.
    if (s.state.crash_at > 4) {
      ASSERT_TRUE(files.count("a")) << "a state lost a name its directory fsync had persisted";
      EXPECT_TRUE(files.at("a") == "one" || files.at("a") == "two");
    }
  }
  // The write of "two" lost while the create after it was kept: the two reordered.
  EXPECT_TRUE(seen.count({{"a", "one"}, {"b", ""}}));
  // Before the fsync of a: the name may be missing while its contents are there, and the contents may be lost.
  EXPECT_TRUE(seen.count({}));
  EXPECT_TRUE(seen.count({{"a", ""}}));
  EXPECT_TRUE(seen.count({{"a", "two"}, {"b", ""}}));
  EXPECT_TRUE(seen.count({{"a", "two"}}));
  EXPECT_GE(candidates, states.size());
}

TEST(CrashModel, SamplingKeepsEveryPrefixAndStaysWithinTheBound) {
  LogBuilder b;
  b.mark();
  for (uint64_t i = 0; i < 30; ++i) {
    b.create(kRoot, "f" + std::to_string(i), 100 + i);
    b.write(100 + i, 0, std::string(10, static_cast<char>('a' + i % 26)));
  }
  Log log = parse_log(empty_tree(), b.bytes, 0);
  size_t candidates = 0;
  const auto states = crash_states(log, ExploreLimits{120, 20, 7}, &candidates);
  EXPECT_GT(candidates, 120u);
  EXPECT_EQ(states.size(), 120u);
  size_t prefixes = 0;
  for (const auto& s : states) prefixes += s.state.kind == CrashState::Kind::Prefix;
  EXPECT_EQ(prefixes, log.ops.size());  // one per crash point after the baseline Mark (all distinct here)
  // The same seed picks the same states.
  const auto again = crash_states(log, ExploreLimits{120, 20, 7});
  ASSERT_EQ(again.size(), states.size());
  for (size_t i = 0; i < states.size(); ++i) EXPECT_EQ(again[i].hash, states[i].hash);
}

TEST(CrashModel, RenameUnlinkAndLostCreations) {
  LogBuilder b;
  b.mark();
  b.create(kRoot, "tmp", 10);                                   // #1
  b.write(10, 0, "data");                                       // #2
  b.rename(kRoot, "tmp", kRoot, "obj", 10);                     // #3
  b.create(kRoot, "x", 11);                                     // #4
  b.rename(kRoot, "x", kRoot, "obj", 11, 10, RENAME_EXCHANGE);  // #5: x <-> obj
  b.unlink(kRoot, "obj", 10);                                   // #6: obj is 11 now: nothing to do
  Log log = parse_log(empty_tree(), b.bytes, 0);
  EXPECT_EQ(root_files(build_state(log, {7, {}, 0, CrashState::Kind::Prefix})),
            (std::map<std::string, std::string>{{"obj", ""}, {"x", "data"}}));
  // The creation of tmp lost, the rename kept: the object exists (its inode was written), under its new name.
  EXPECT_EQ(root_files(build_state(log, {4, {1}, 0, CrashState::Kind::DropOne})),
            (std::map<std::string, std::string>{{"obj", "data"}}));
  // The rename lost: the old name stays.
  EXPECT_EQ(root_files(build_state(log, {4, {3}, 0, CrashState::Kind::DropOne})),
            (std::map<std::string, std::string>{{"tmp", "data"}}));
}

TEST(CrashModel, AReusedInodeNumberIsANewObject) {
  LogBuilder b;
  b.mark();
  b.create(kRoot, "a", 10);
  b.write(10, 0, "first");
  b.unlink(kRoot, "a", 10);
  b.create(kRoot, "b", 10);  // the filesystem gave the number out again
  b.write(10, 0, "2nd");
  Log log = parse_log(empty_tree(), b.bytes, 0);
  EXPECT_EQ(root_files(build_state(log, {6, {3}, 0, CrashState::Kind::DropOne})),
            (std::map<std::string, std::string>{{"a", "first"}, {"b", "2nd"}}));
}

TEST(CrashModel, AnOperationOnAnObjectTheLogNeverMadeIsARecorderGap) {
  LogBuilder b;
  b.mark();
  b.write(42, 0, "from nowhere");
  try {
    parse_log(empty_tree(), b.bytes, 0);
    FAIL() << "parse_log accepted a write to an unknown inode";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("never created"), std::string::npos) << e.what();
  }
  LogBuilder damaged;
  damaged.mark();
  damaged.bytes.resize(damaged.bytes.size() - 1);
  EXPECT_THROW(parse_log(empty_tree(), damaged.bytes, 0), std::runtime_error);
}

TEST(CrashModel, TornWritesArePagesThatPersistIndependently) {
  LogBuilder b;
  b.mark();
  b.create(kRoot, "f", 10);
  b.write(10, 100, std::string(9000, 'x'));  // pages 0, 1 and 2
  Log log = parse_log(empty_tree(), b.bytes, 0, 4096);
  ASSERT_EQ(log.ops.size(), 5u);
  EXPECT_EQ(log.ops[2].rec.off, 100u);
  EXPECT_EQ(log.ops[2].rec.data.size(), 3996u);
  EXPECT_EQ(log.ops[3].rec.off, 4096u);
  EXPECT_EQ(log.ops[4].rec.data.size(), 9100u - 8192u);
  const Tree t = build_state(log, {5, {3}, 0, CrashState::Kind::DropOne});
  const std::string got = root_files(t).at("f");
  EXPECT_EQ(got.size(), 9100u);
  EXPECT_EQ(got.substr(4096, 4096), std::string(4096, '\0'));
  EXPECT_EQ(got.substr(8192), std::string(908, 'x'));
}

TEST(CrashModel, TheRecordEncodingRoundTrips) {
  Record r;
  r.op = Op::Rename;
  r.pid = 1;
  r.ino = 2;
  r.ino2 = 3;
  r.flags = RENAME_EXCHANGE;
  r.name = "a";
  r.name2 = std::string(300, 'b');
  r.data = std::string("\0\1\2", 3);
  std::string bytes;
  encode(r, bytes);
  encode(r, bytes);
  std::string_view in = bytes;
  Record got;
  ASSERT_TRUE(decode(in, got));
  EXPECT_EQ(got.op, Op::Rename);
  EXPECT_EQ(got.ino2, 3u);
  EXPECT_EQ(got.name2, r.name2);
  EXPECT_EQ(got.data, r.data);
  ASSERT_TRUE(decode(in, got));
  EXPECT_TRUE(in.empty());
  EXPECT_FALSE(decode(in, got));
}

// --- the content rule and the expectations --------------------------------------------------------------------

TEST(CrashRules, ContentIsAVersionOrABlockWiseMixOfVersions) {
  const uint64_t B = 4;
  const std::vector<std::string> v{"aaaabbbbcc", "AAAABBBBCCCCDD"};
  EXPECT_TRUE(content_allowed("aaaabbbbcc", v, B));
  EXPECT_TRUE(content_allowed("AAAABBBBCCCCDD", v, B));
  EXPECT_TRUE(content_allowed("aaaaBBBBCCCCDD", v, B)) << "a mix of whole blocks, of a version's size";
  EXPECT_TRUE(content_allowed(std::string("aaaabbbbcc\0\0DD", 14), v, B)) << "zeros past a version's end";
  EXPECT_TRUE(content_allowed("AAAABBBBCCCC", v, B)) << "a block multiple between the sizes";
  EXPECT_FALSE(content_allowed("AAAABBBB", v, B)) << "a block multiple below every size";
  EXPECT_FALSE(content_allowed("aaaabbbbc", v, B)) << "a size no version had";
  EXPECT_FALSE(content_allowed("aaaXbbbbcc", v, B)) << "a byte no version had";
  EXPECT_FALSE(content_allowed("aaAAbbbbcc", v, B)) << "a mix inside one block";
  EXPECT_FALSE(content_allowed("", {}, B));
}

TEST(CrashRules, ExpectationsFollowFsyncs) {
  Expectations e;
  const int f = e.make(0, "f", S_IFREG, "v0");
  e.baseline();
  e.begin_step("write v1");  // 1
  e.set_content(f, "v1");
  e.begin_step("fsync f");  // 2
  e.synced(f);
  e.begin_step("write v2");  // 3
  e.set_content(f, "v2");
  e.begin_step("create g");  // 4
  const int g = e.make(0, "g", S_IFREG, "");
  e.begin_step("fsync /");  // 5
  e.synced(0);
  e.begin_step("unlink f");  // 6
  e.bind(0, "f", kNone);

  auto v = e.versions(f, 0);  // step 1 in progress
  EXPECT_EQ(v.contents, (std::vector<std::string>{"v0", "v1"}));
  v = e.versions(f, 2);  // fsynced, step 3 in progress
  EXPECT_EQ(v.contents, (std::vector<std::string>{"v1", "v2"}));
  EXPECT_FALSE(v.exact);
  v = e.versions(f, 1);  // the fsync in progress
  EXPECT_FALSE(v.exact);
  Expectations e2;
  const int h = e2.make(0, "h", S_IFREG, "x");
  e2.baseline();
  e2.begin_step("nothing");
  EXPECT_TRUE(e2.versions(h, 1).exact);

  EXPECT_FALSE(e.binding(0, "f", 3).may_be_absent);
  EXPECT_TRUE(e.binding(0, "g", 3).may_be_absent) << "created, its directory not yet fsynced";
  EXPECT_FALSE(e.binding(0, "g", 5).may_be_absent);
  EXPECT_TRUE(e.binding(0, "f", 5).may_be_absent) << "unlink in progress";
  EXPECT_EQ(e.binding(0, "g", 5).objs, std::vector<int>{g});
  EXPECT_TRUE(e.binding(0, "nope", 5).objs.empty());
}

// --- every check catches a bad state --------------------------------------------------------------------------

std::string bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

class CrashChecks : public ::testing::Test {
 protected:
  void SetUp() override {
    SKIP_WITHOUT_FUSE();
    x_ = std::make_unique<Explorer>("checks");
    Workload& w = x_->mount();
    w.baseline();
    w.put_durable("durable", bytes(6000, 1));
    w.symlink("the-target", "link");
    w.fsync("");
    w.mkdir("dir");
    w.fsync("");
    w.create("unsynced");
    w.fsync("");
    w.write("unsynced", 0, bytes(5000, 2));
    x_->unmount();
    const auto v = x_->check_now();
    for (const auto& e : v) ADD_FAILURE() << "the state the run left is not clean: " << e.line();
  }

  const Volume& vol() const { return x_->volume(); }
  std::string backing(const std::string& plain) const {
    return layout::backing_name(vol().names().encrypt(vol().root_iv(), plain));
  }
  // A valid encryption of `data` at dir/name (replacing what is there).
  void put_content(const std::string& dir, const std::string& name, const std::string& data) const {
    const std::string tmp = dir + "/injected.tmp";
    UniqueFd fd(::open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    ASSERT_TRUE(fd);
    ContentFile f(vol().content(), std::move(fd));
    f.write(0, {reinterpret_cast<const uint8_t*>(data.data()), data.size()});
    ASSERT_EQ(::rename(tmp.c_str(), (dir + "/" + name).c_str()), 0);
  }
  // The check of a damaged copy must report `rule` on `path` (and, like every bad state, something at all).
  void expect_caught(const std::string& dir, const std::string& rule, const std::string& path) {
    const auto v = x_->check_now(dir);
    std::string all;
    bool found = false;
    for (const auto& e : v) {
      all += "  " + e.line() + "\n";
      found = found || (e.rule == rule && e.path == path);
    }
    EXPECT_TRUE(found) << "expected " << rule << " " << path << ", got:\n" << all;
  }

  std::unique_ptr<Explorer> x_;
};

TEST_F(CrashChecks, OpenCatchesAMissingConfig) {
  const std::string d = x_->copy_cipher("no-config");
  ASSERT_EQ(::unlink((d + "/veilfs.conf").c_str()), 0);
  expect_caught(d, "OPEN", "/");
}

TEST_F(CrashChecks, EioCatchesAFlippedBit) {
  const std::string d = x_->copy_cipher("flipped");
  const std::string p = d + "/" + backing("durable");
  UniqueFd fd(::open(p.c_str(), O_RDWR | O_CLOEXEC));
  uint8_t c = 0;
  ASSERT_EQ(::pread(fd.get(), &c, 1, 100), 1);
  c ^= 1;
  ASSERT_EQ(::pwrite(fd.get(), &c, 1, 100), 1);
  expect_caught(d, "EIO", "/durable");
  expect_caught(d, "FSCK", "/durable");
}

TEST_F(CrashChecks, MissingCatchesALostDurableName) {
  const std::string d = x_->copy_cipher("lost-name");
  ASSERT_EQ(::unlink((d + "/" + backing("durable")).c_str()), 0);
  expect_caught(d, "MISSING", "/durable");
}

TEST_F(CrashChecks, UnexpectedCatchesANameTheWorkloadNeverMade) {
  const std::string d = x_->copy_cipher("intruder");
  put_content(d, backing("intruder"), "hello");
  expect_caught(d, "UNEXPECTED", "/intruder");
}

TEST_F(CrashChecks, ContentCatchesARolledBackFsyncedFile) {
  const std::string d = x_->copy_cipher("rolled-back");
  put_content(d, backing("durable"), bytes(6000, 99));  // valid ciphertext, wrong plaintext
  expect_caught(d, "CONTENT", "/durable");
}

TEST_F(CrashChecks, ContentCatchesAGarbageBlockInAnUnsyncedFile) {
  std::string mixed = bytes(5000, 2);
  std::copy_n(bytes(100, 77).begin(), 100, mixed.begin() + 4096);  // the second block: never written
  const std::string d = x_->copy_cipher("garbage");
  put_content(d, backing("unsynced"), mixed);
  expect_caught(d, "CONTENT", "/unsynced");
  // A mix of its versions is allowed: the empty version's zeros in the second block, the new data in the first.
  std::string ok = bytes(5000, 2);
  std::fill(ok.begin() + 4096, ok.end(), '\0');
  const std::string d2 = x_->copy_cipher("mix");
  put_content(d2, backing("unsynced"), ok);
  EXPECT_TRUE(x_->check_now(d2).empty());
}

TEST_F(CrashChecks, TypeCatchesAFileThatBecameADirectory) {
  const std::string d = x_->copy_cipher("type");
  const std::string p = d + "/" + backing("durable");
  ASSERT_EQ(::unlink(p.c_str()), 0);
  ASSERT_EQ(::mkdir(p.c_str(), 0700), 0);
  expect_caught(d, "TYPE", "/durable");
}

TEST_F(CrashChecks, TargetCatchesASymlinkPointingElsewhere) {
  const std::string d = x_->copy_cipher("target");
  const std::string p = d + "/" + backing("link");
  ASSERT_EQ(::unlink(p.c_str()), 0);
  ASSERT_EQ(::symlink(vol().links().encrypt("another-target").c_str(), p.c_str()), 0);
  expect_caught(d, "TARGET", "/link");
}

TEST_F(CrashChecks, FsckCatchesWhatRepairLeavesAndAcceptsWhatItRepairs) {
  const std::string d = x_->copy_cipher("foreign");
  daemon_harness::write_text(d + "/not-a-veilfs-name", "x");  // the mount hides it; fsck cannot repair it
  expect_caught(d, "FSCK", "/not-a-veilfs-name");
  const std::string d2 = x_->copy_cipher("leftover");
  daemon_harness::write_text(d2 + "/veilfs.conf.tmp.0123456789abcdef", "x");  // repairable: no violation
  EXPECT_TRUE(x_->check_now(d2).empty());
}

TEST_F(CrashChecks, SecretCatchesAConfigThatOpensWithTheWrongPassphrase) {
  x_->set_open_rule(
      passphrase_rule(std::string(kPassphrase), "a new passphrase", /*replaces=*/true, x_->expect().step() + 1));
  // Before the (pretended) veilkey step returned, the old passphrase is fine.
  EXPECT_TRUE(x_->check_now().empty());
  x_->expect().begin_step("veilkey passwd (pretended)");
  expect_caught(x_->copy_cipher("secret"), "SECRET", "/");
}

TEST_F(CrashChecks, TheReplayCatchesACallTheRecorderMissed) {
  const std::string log = x_->log_bytes();
  // Drop the last pwrite record: the replayed final state no longer matches the cipher dir.
  std::string_view in = log;
  std::string edited;
  std::vector<Record> recs;
  Record r;
  while (decode(in, r)) recs.push_back(r);
  ASSERT_TRUE(in.empty());
  size_t last_write = recs.size();
  for (size_t i = 0; i < recs.size(); ++i)
    if (recs[i].op == Op::Write) last_write = i;
  ASSERT_LT(last_write, recs.size());
  for (size_t i = 0; i < recs.size(); ++i)
    if (i != last_write) encode(recs[i], edited);
  const Result res = x_->explore_log(edited);
  ASSERT_FALSE(res.fatal.empty());
  EXPECT_NE(res.fatal.front().find("recorder missed"), std::string::npos) << res.fatal.front();
  // And the unedited log replays to the cipher dir exactly, with no violation in this clean workload.
  const Result ok = x_->explore_log(log);
  EXPECT_TRUE(ok.fatal.empty()) << (ok.fatal.empty() ? "" : ok.fatal.front());
}

}  // namespace
}  // namespace veil::crash
