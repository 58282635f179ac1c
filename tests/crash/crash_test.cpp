// The crash-state workloads (tests/crash/README.md): each runs through a real mount (or veilkey) under the
// recorder, then every crash state the persistence model allows is checked. A workload whose current
// violations are listed in the README is marked kKnown: it is skipped with its violations printed unless
// VEILFS_CRASH_STRICT=1, and a new violation in an unmarked workload fails it.
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "common/daemon_harness.hpp"
#include "explorer.hpp"

namespace veil::crash {
namespace {

constexpr bool kKnown = true;  // violations listed in tests/crash/README.md
constexpr bool kClean = false;

std::string bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

// Plaintext names long enough that their encrypted form needs a long-name sidecar.
std::string long_name(const std::string& tag) { return tag + "-" + std::string(200 - tag.size(), 'n'); }

// Symlink targets long enough to need a link sidecar (their encrypted form is over 4095 bytes).
std::string long_target(const std::string& tag) {
  std::string t = "/" + tag;
  while (t.size() < 3400) t += "/component-of-a-long-target";
  return t;
}

TEST(Crash, AppendsAcrossBlockBoundaries) {
  SKIP_WITHOUT_FUSE();
  Explorer x("append");
  Workload& w = x.mount();
  w.create("keep");
  w.write("keep", 0, bytes(5000, 1));
  w.baseline();
  w.create("f");
  w.fsync("");
  w.append("f", bytes(3000, 2));
  w.fsync("f");
  w.append("f", bytes(3000, 3));  // 3000 -> 6000: crosses the first block boundary
  w.fsync("f");
  w.append("f", bytes(9000, 4));  // 6000 -> 15000: two more
  w.append("f", bytes(100, 5));
  w.fsync("f");
  w.write("f", 20000, bytes(100, 7));  // past the end, beyond the final block: a hole between
  w.fsync("f");
  w.append("keep", bytes(4000, 6));  // 5000 -> 9000, a file from before the run
  w.fsync("keep");
  // Large writes: the kernel sends them as several requests, the engine writes each in chunks (each pwrite must
  // stand on its own), and the close tightens what the chunks left loose (after a barrier).
  w.create("big");
  w.append("big", bytes(600000, 8));
  w.append("big", bytes(70001, 9));
  w.write("big", 2000, bytes(300000, 10));  // over the middle, across many blocks
  w.fsync("big");
  VEILFS_CRASH_EXPLORE(x, kClean);
}

TEST(Crash, Overwrites) {
  SKIP_WITHOUT_FUSE();
  Explorer x("overwrite");
  Workload& w = x.mount();
  w.create("f");
  w.write("f", 0, bytes(3 * 4096 + 100, 1));
  w.create("g");
  w.write("g", 0, bytes(2000, 2));
  w.baseline();
  w.write("f", 4000, bytes(200, 3));  // across the boundary of blocks 0 and 1
  w.fsync("f");
  w.write("f", 4096, bytes(4096, 4));  // all of block 1
  w.write("f", 12288, bytes(50, 5));   // inside the short final block
  w.fsync("f");
  w.write("f", 0, bytes(10, 6));
  w.write("f", 8000, bytes(5000, 7));  // over blocks 1..3 and past the end
  w.fsync("f");
  w.write("g", 100, bytes(100, 8));
  w.fsync("g");
  VEILFS_CRASH_EXPLORE(x, kClean);
}

// The same kind of overwrites, with every write torn into the pages it touches: a block rewritten in place spans
// two pages of the backing file, and a power cut may persist one of them.
TEST(Crash, TornOverwrites) {
  SKIP_WITHOUT_FUSE();
  Explorer x("torn");
  x.set_tear(4096);
  Workload& w = x.mount();
  w.create("f");
  w.write("f", 0, bytes(3 * 4096 + 100, 1));
  w.baseline();
  w.write("f", 4096, bytes(4096, 2));  // block 1, in place
  w.fsync("f");
  w.append("f", bytes(6000, 3));
  w.fsync("f");
  VEILFS_CRASH_EXPLORE(x, kKnown);
}

TEST(Crash, TruncatesUpAndDown) {
  SKIP_WITHOUT_FUSE();
  Explorer x("truncate");
  Workload& w = x.mount();
  w.create("f");
  w.write("f", 0, bytes(10000, 1));
  w.create("g");
  w.write("g", 0, bytes(8192, 2));
  w.baseline();
  w.truncate("f", 5000);  // down to a short final block
  w.fsync("f");
  w.truncate("f", 8192);  // up, to a block boundary
  w.fsync("f");
  w.truncate("f", 4096);   // down, to a block boundary
  w.truncate("f", 20000);  // up, leaving holes
  w.fsync("f");
  w.truncate("f", 100);  // down into the first block
  w.fsync("f");
  w.truncate("g", 0);
  w.append("g", bytes(50, 3));
  w.fsync("g");
  w.open_trunc("f");
  w.fsync("f");
  VEILFS_CRASH_EXPLORE(x, kClean);
}

TEST(Crash, CreateRenameUnlinkShortAndLongNames) {
  SKIP_WITHOUT_FUSE();
  Explorer x("names");
  Workload& w = x.mount();
  const std::string l1 = long_name("first"), l2 = long_name("second"), l3 = long_name("third"), lold = long_name("old");
  w.create("old");
  w.write("old", 0, bytes(300, 1));
  w.create(lold);
  w.write(lold, 0, bytes(300, 2));
  w.baseline();
  w.create("a");
  w.append("a", bytes(100, 3));
  w.fsync("a");
  w.fsync("");
  w.create(l1);
  w.append(l1, bytes(5000, 4));
  w.fsync(l1);
  w.fsync("");
  w.rename("a", l2);  // short -> long
  w.fsync("");
  w.rename(l1, "b");  // long -> short
  w.link("b", l3);    // a second, long, name
  w.fsync("");
  w.unlink("b");
  w.unlink(l3);
  w.fsync("");
  w.rename("old", l2);  // over an existing long name
  w.fsync("");
  w.unlink(lold);
  w.fsync("");
  VEILFS_CRASH_EXPLORE(x, kClean);
}

TEST(Crash, LongSymlinkTargets) {
  SKIP_WITHOUT_FUSE();
  Explorer x("symlinks");
  Workload& w = x.mount();
  const std::string lname = long_name("link");
  w.symlink(long_target("old"), "s-old");
  w.baseline();
  w.symlink(long_target("one"), "s1");
  w.fsync("");
  w.symlink(long_target("two"), lname);
  w.fsync("");
  w.symlink("short-target", "s2");
  w.fsync("");
  w.rename("s1", "s1-moved");
  w.fsync("");
  w.rename(lname, "s3");
  w.fsync("");
  w.link("s3", "s3-link");
  w.fsync("");
  w.unlink("s-old");
  w.fsync("");
  VEILFS_CRASH_EXPLORE(x, kClean);
}

TEST(Crash, Directories) {
  SKIP_WITHOUT_FUSE();
  Explorer x("dirs");
  Workload& w = x.mount();
  const std::string ldir = long_name("dir");
  w.mkdir("keep");
  w.create("keep/x");
  w.write("keep/x", 0, bytes(100, 1));
  w.baseline();
  w.mkdir("d");
  w.fsync("");
  w.put_durable("d/f", bytes(3000, 2));
  w.mkdir(ldir);
  w.fsync("");
  w.mkdir("d/sub");
  w.fsync("d");
  w.rename("d", "e");  // the IV file must be on disk before the new name is
  w.fsync("");
  w.rmdir_not_empty("e");
  w.rename("e/sub", ldir + "/sub2");
  w.fsync("e");
  w.fsync(ldir);
  w.rmdir(ldir + "/sub2");
  w.fsync(ldir);
  w.rmdir(ldir);
  w.fsync("");
  w.unlink("e/f");
  w.fsync("e");
  w.rmdir("e");
  w.fsync("");
  w.rename("keep", "kept");
  w.fsync("");
  VEILFS_CRASH_EXPLORE(x, kClean);
}

// sqlite's rollback journal (journal_mode=DELETE, synchronous=FULL): write the journal, fdatasync it (sqlite's
// unix VFS syncs with fdatasync) and fsync its directory, write the database in place, fdatasync it, delete the
// journal (the first transaction also fsyncs the directory after the delete, as synchronous=EXTRA does).
TEST(Crash, SqliteLikeJournal) {
  SKIP_WITHOUT_FUSE();
  Explorer x("sqlite");
  Workload& w = x.mount();
  w.create("db");
  w.write("db", 0, bytes(4 * 4096, 1));
  w.baseline();
  for (int txn = 0; txn < 2; ++txn) {
    w.create("db-journal");
    w.append("db-journal", bytes(512, 10 + txn));                // header
    w.append("db-journal", w.content("db").substr(4096, 4096));  // the page about to change
    w.fdatasync("db-journal");
    w.fsync("");
    w.write("db", 4096, bytes(4096, 20 + txn));
    w.write("db", 3 * 4096, bytes(100, 30 + txn));
    w.fdatasync("db");
    w.unlink("db-journal");
    if (txn == 0) w.fsync("");
  }
  VEILFS_CRASH_EXPLORE(x, kClean);
}

// git's object store and ref update: write to a temp file, fsync, rename into place, fsync the directory.
TEST(Crash, GitLikeObjects) {
  SKIP_WITHOUT_FUSE();
  Explorer x("git");
  Workload& w = x.mount();
  w.mkdir("objects");
  w.mkdir("objects/ab");
  w.create("HEAD");
  w.write("HEAD", 0, "0000000000000000000000000000000000000000\n");
  w.baseline();
  const std::string obj1 = "objects/ab/cdef0123456789abcdef0123456789abcdef01";
  w.create("objects/tmp_obj_a1b2c3");
  w.append("objects/tmp_obj_a1b2c3", bytes(3000, 1));
  w.fsync("objects/tmp_obj_a1b2c3");
  w.rename("objects/tmp_obj_a1b2c3", obj1);
  w.fsync("objects/ab");
  w.fsync("objects");
  w.create("HEAD.lock");
  w.append("HEAD.lock", "abcdef0123456789abcdef0123456789abcdef01\n");
  w.fsync("HEAD.lock");
  w.rename("HEAD.lock", "HEAD");
  w.fsync("");
  // A pack written under a long temporary name.
  const std::string tmp = "objects/" + long_name("tmp_pack");
  w.create(tmp);
  w.append(tmp, bytes(9000, 2));
  w.fsync(tmp);
  w.rename(tmp, "objects/ab/0123456789abcdef0123456789abcdef012345");
  w.fsync("objects/ab");
  w.fsync("objects");
  VEILFS_CRASH_EXPLORE(x, kClean);
}

// veilkey rewrites the config (temp file, fsync, rename, fsync of the directory); files are untouched.
void keytool_workload(const std::string& name, const std::vector<std::string>& command, bool replaces, bool known) {
  Explorer x(name);
  Workload& w = x.mount(/*record=*/false);
  w.create("file");
  w.write("file", 0, bytes(6000, 1));
  w.mkdir("dir");
  w.create("dir/" + long_name("inner"));
  w.write("dir/" + long_name("inner"), 0, bytes(100, 2));
  w.baseline();
  const std::string newpass = x.base() + "/newpass";
  daemon_harness::write_text(newpass, "the new passphrase\n");
  std::vector<std::string> args = command;
  args.insert(args.end(), {x.cipher(), "--passfile", x.passfile(), "--new-passfile", newpass});
  // What each state's config must open with: before veilkey returned, the old secret or (from the rename on)
  // the new one; after, the new one, and the old one too unless the command replaced its slot.
  x.set_open_rule(passphrase_rule(std::string(kPassphrase), "the new passphrase", replaces, /*step=*/1));
  ASSERT_EQ(x.run_recorded_veilkey(command[0] + (command.size() > 1 ? " " + command[1] : ""), args), 0);
  VEILFS_CRASH_EXPLORE(x, known);
}

TEST(Crash, VeilkeyPasswd) {
  SKIP_WITHOUT_FUSE();
  keytool_workload("passwd", {"passwd"}, /*replaces=*/true, kClean);
}

TEST(Crash, VeilkeySlotAdd) {
  SKIP_WITHOUT_FUSE();
  keytool_workload("slot-add", {"slot", "add", "--kdf-memory", "8192", "--kdf-ops", "1"}, /*replaces=*/false, kClean);
}

}  // namespace
}  // namespace veil::crash
