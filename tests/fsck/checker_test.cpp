// fsck against deterministically damaged volumes: each test builds a clean volume through the engines, does
// one kind of damage to the cipher dir, and pins the exact report.
#include "fsck/checker.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "test_volume.hpp"
#include "veilfs/crypto/encoding.hpp"
#include "veilfs/crypto/kdf.hpp"
#include "veilfs/layout/cipher_dir.hpp"
#include "veilfs/layout/conflicts.hpp"

namespace veil::fsck {
namespace {

using testing::pattern;
using testing::read_all;
using testing::TestVolume;
using testing::write_all;
using Lines = std::vector<std::string>;

constexpr uint32_t kB = format::kDefaultBlockSize;

std::string long_plain_name() { return std::string(200, 'L') + ".txt"; }  // encodes to more than 255 bytes

// A volume with one of everything fsck looks at.
void populate(TestVolume& v) {
  v.mkdir("/docs");
  v.mkdir("/docs/deep");
  v.mkdir("/" + std::string(190, 'D'));  // a long-named directory: its IV derives from the full name
  v.write_file("/empty", {});
  v.write_file("/one", pattern(1, 1));
  v.write_file("/docs/report.txt", pattern(10000, 2));  // 3 blocks, the last partial
  v.write_file("/docs/deep/exact", pattern(2 * kB, 3));
  v.write_file("/docs/" + long_plain_name(), pattern(5000, 4));
  v.write_file("/" + std::string(190, 'D') + "/inner", pattern(100, 5));
  v.write_sparse("/docs/sparse", 64 * kB, 40 * kB, pattern(300, 6));  // holes before and after data
  v.symlink("/docs/link", "report.txt");
  v.symlink("/docs/longlink", std::string(3500, 'x'));  // encrypted target too long for a backing symlink
  v.set_xattr("/docs/report.txt", "user.comment", pattern(50, 7));
  v.set_xattr("/docs", "user.tag", pattern(5, 8));
}

void flip_byte(const std::string& path, uint64_t off) {
  auto bytes = read_all(path);
  ASSERT_LT(off, bytes.size());
  bytes[off] ^= 0x20;
  write_all(path, bytes);
}

uint64_t slot_offset(const TestVolume& v, uint64_t i) { return v.vol().content()->layout().slot_offset(i); }
uint64_t slot_size(const TestVolume& v) { return v.vol().content()->layout().slot_size(); }

TEST(FsckChecker, CleanVolumeHasNoProblems) {
  TestVolume v;
  populate(v);
  Report r = v.check();
  EXPECT_TRUE(r.config_ok);
  EXPECT_EQ(r.sorted_lines(), Lines{});
  EXPECT_TRUE(r.clean());
  EXPECT_EQ(r.stats.dirs, 4u);  // root, docs, deep, the long-named one
  EXPECT_EQ(r.stats.files, 7u);
  EXPECT_EQ(r.stats.symlinks, 2u);
}

TEST(FsckChecker, CleanVolumeWithAesGcmHasNoProblems) {
  if (fastest_cipher() != CipherId::Aes256Gcm) GTEST_SKIP() << "no AES-NI on this CPU";
  TestVolume v(CipherId::Aes256Gcm);
  populate(v);
  EXPECT_EQ(v.check().sorted_lines(), Lines{});
}

TEST(FsckChecker, FlippedBitInABlockIsReportedWithItsIndex) {
  TestVolume v;
  populate(v);
  flip_byte(v.abs(v.cipher_path("/docs/report.txt")), slot_offset(v, 1) + 100);
  EXPECT_EQ(v.check().sorted_lines(),
            Lines{"blocks-bad /docs/report.txt: 1 of 3 blocks fail authentication (block 1)"});
}

// A file with three names (hard links in the cipher dir, as the mount makes them) is one file: verified once and
// reported once, the report naming the other two names; the summary counts it once.
TEST(FsckChecker, HardLinkedFileIsReportedOnceNamingItsOtherNames) {
  TestVolume v;
  v.mkdir("/docs");
  v.write_file("/a", pattern(10000, 40));
  v.write_file("/clean", pattern(100, 41));
  for (const char* other : {"/docs/b", "/docs/c"})
    ASSERT_EQ(::link(v.abs(v.cipher_path("/a")).c_str(), v.abs(v.cipher_path(other)).c_str()), 0) << other;
  ASSERT_EQ(::link(v.abs(v.cipher_path("/clean")).c_str(), v.abs(v.cipher_path("/docs/clean2")).c_str()), 0);
  flip_byte(v.abs(v.cipher_path("/a")), slot_offset(v, 1) + 100);
  Report r = v.check();
  ASSERT_EQ(r.problem_count, 1u) << ::testing::PrintToString(r.sorted_lines());
  const std::string line = r.problems.at(0).line();
  EXPECT_EQ(line.rfind("blocks-bad /", 0), 0u) << line;
  EXPECT_NE(line.find("1 of 3 blocks fail authentication (block 1) (hard link, also named "), std::string::npos)
      << line;
  for (const char* name : {"/a", "/docs/b", "/docs/c"}) {
    const size_t at = line.find(name);
    EXPECT_NE(at, std::string::npos) << name << " missing from: " << line;
    EXPECT_EQ(line.find(name, at + 1), std::string::npos) << name << " named twice in: " << line;
  }
  EXPECT_EQ(r.stats.files, 2u) << "a file with several names is one file";
}

// A name the walk never reaches (here: outside the cipher dir) cannot hold a damaged file's report back.
TEST(FsckChecker, HardLinkedFileWithANameOutsideTheVolumeIsStillReported) {
  TestVolume v;
  v.write_file("/a", pattern(10000, 42));
  const std::string outside = v.dir() + ".outside";
  ASSERT_EQ(::link(v.abs(v.cipher_path("/a")).c_str(), outside.c_str()), 0);
  flip_byte(v.abs(v.cipher_path("/a")), slot_offset(v, 0) + 100);
  EXPECT_EQ(v.check().sorted_lines(), Lines{"blocks-bad /a: 1 of 3 blocks fail authentication (block 0)"});
  ::unlink(outside.c_str());
}

TEST(FsckChecker, FlippedBitInTheFileIdFailsEveryBlock) {
  TestVolume v;
  populate(v);
  flip_byte(v.abs(v.cipher_path("/docs/report.txt")), 10);
  EXPECT_EQ(v.check().sorted_lines(),
            Lines{"blocks-bad /docs/report.txt: 3 of 3 blocks fail authentication (blocks 0-2)"});
}

TEST(FsckChecker, UnknownHeaderVersionIsAHeaderProblem) {
  TestVolume v;
  populate(v);
  flip_byte(v.abs(v.cipher_path("/one")), 0);  // version 1 -> 33
  EXPECT_EQ(v.check().sorted_lines(), Lines{"header-bad /one: file header version 33 is not supported"});
}

TEST(FsckChecker, MissingDirectoryIvIsReportedAndNamesStillDecrypt) {
  TestVolume v;
  populate(v);
  const std::string deep = v.abs(v.cipher_path("/docs/deep"));
  ASSERT_EQ(::unlink((deep + "/veilfs.diriv").c_str()), 0);
  // The mount derives the IV from the parent's and the encoded name: the file inside still decrypts. A directory
  // changed within the last day may still be waiting for its IV file from a sync service: fsck says so.
  const std::string line =
      "dir-iv-missing /docs/deep: directory IV file veilfs.diriv is missing (the mount derives it)";
  const std::string proven = "; every name decrypts under the derived IV";
  EXPECT_EQ(v.check().sorted_lines(),
            Lines{line + "; the directory changed within the last day: perhaps its IV file is still being synced" +
                  proven + " (--repair writes it)"});
  const struct timespec old[2] = {{1600000000, 0}, {1600000000, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, deep.c_str(), old, 0), 0);
  EXPECT_EQ(v.check().sorted_lines(), Lines{line + proven + " (--repair writes it)"});
  // Proven by its names, the derived IV is written down by --repair; then the directory is clean.
  Options repair;
  repair.repair = true;
  EXPECT_EQ(v.check(repair).sorted_lines(), Lines{line + proven + " [written]"});
  EXPECT_EQ(v.check().sorted_lines(), Lines{});
}

// A directory whose names do not decrypt under the derived IV (renamed after its IV file was lost): fsck must not
// write the derived IV, which would only make the wrong IV look right.
TEST(FsckChecker, AnUnprovenDerivedIvIsNotWritten) {
  TestVolume v;
  populate(v);
  const std::string deep = v.cipher_path("/docs/deep");
  ASSERT_EQ(::unlink(v.abs(deep + "/veilfs.diriv").c_str()), 0);
  ASSERT_EQ(::rename(v.abs(deep).c_str(), v.abs(v.cipher_path("/docs/moved")).c_str()), 0);
  Options repair;
  repair.repair = true;
  Report r = v.check(repair);
  EXPECT_FALSE(r.clean());
  EXPECT_EQ(r.repaired_count, 0u);
  EXPECT_FALSE(std::filesystem::exists(v.abs(v.cipher_path("/docs/moved") + "/veilfs.diriv")));
}

TEST(FsckChecker, OrphanedSidecarIsReportedThenRemovedByRepair) {
  TestVolume v;
  populate(v);
  const std::string file = v.cipher_path("/docs/" + long_plain_name());
  ASSERT_EQ(::unlink(v.abs(file).c_str()), 0);  // the entry goes, its sidecar stays
  const std::string side_name = std::filesystem::path(file).filename().string() + ".name";
  const std::string line = "sidecar-orphaned /docs/" + side_name + ": long-name sidecar without its entry " +
                           std::filesystem::path(file).filename().string();
  const std::string fresh = " (changed within the last day: perhaps its entry is still being synced)";
  EXPECT_EQ(v.check().sorted_lines(), Lines{line + fresh});
  EXPECT_TRUE(std::filesystem::exists(v.abs(file + ".name"))) << "fsck without --repair modified the volume";
  const struct timespec old[2] = {{1600000000, 0}, {1600000000, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, v.abs(file + ".name").c_str(), old, 0), 0);
  EXPECT_EQ(v.check().sorted_lines(), Lines{line});

  // --repair alone keeps it: on a tree still being synced, the entry may yet arrive.
  std::vector<std::string> removed;
  Options opt;
  opt.repair = true;
  opt.on_repair = [&](const std::string& p) { removed.push_back(p); };
  Report kept = v.check(opt);
  EXPECT_EQ(kept.sorted_lines(), Lines{line + "; kept (--delete-orphans removes it)"});
  EXPECT_EQ(kept.repaired_count, 0u);
  EXPECT_TRUE(removed.empty());
  EXPECT_TRUE(std::filesystem::exists(v.abs(file + ".name")));

  opt.delete_orphans = true;
  Report r = v.check(opt);
  EXPECT_EQ(r.sorted_lines(), Lines{line + " [removed]"});
  EXPECT_EQ(r.repaired_count, 1u);
  EXPECT_EQ(removed, Lines{file + ".name"});
  EXPECT_FALSE(std::filesystem::exists(v.abs(file + ".name")));
  EXPECT_EQ(v.check().sorted_lines(), Lines{});
}

// Conflict copies that sync services made (layout/conflicts.hpp) are notices, not damage: named as the mount shows
// them, and their contents are checked like any file's.
TEST(FsckChecker, SyncConflictCopiesAreNoticesCheckedUnderTheirShownName) {
  TestVolume v;
  populate(v);
  const std::string m = ".sync-conflict-20261202-101500-ABCDEFG";
  for (const std::string& plain : {std::string("/docs/report.txt"), "/docs/" + long_plain_name()}) {
    const std::string c = v.cipher_path(plain);
    const std::string copy = layout::conflict_backing_candidates(c.substr(c.rfind('/') + 1), m).front();
    std::filesystem::copy_file(v.abs(c), v.abs(c.substr(0, c.rfind('/') + 1) + copy));
  }
  Report r = v.check();
  const std::string what =
      ": a sync service's conflict copy (shown under this name by the mount): compare it with the original, then "
      "rename or delete it";
  const std::string shown = "/docs/report.sync-conflict-20261202-101500-ABCDEFG.txt";
  EXPECT_EQ(r.sorted_lines(), (Lines{"conflict-copy /docs/" + layout::shown_conflict_name(long_plain_name(), m) + what,
                                     "conflict-copy " + shown + what}));
  EXPECT_TRUE(r.clean());
  EXPECT_EQ(r.notice_count, 2u);
  // A copy whose data is damaged is a problem like any file's, under the shown name.
  const std::string c = v.cipher_path("/docs/report.txt");
  flip_byte(
      v.abs(c.substr(0, c.rfind('/') + 1) + layout::conflict_backing_candidates(c.substr(c.rfind('/') + 1), m).front()),
      slot_offset(v, 1) + 40);
  Report bad = v.check();
  EXPECT_FALSE(bad.clean());
  bool named = false;
  for (const auto& l : bad.sorted_lines()) named |= l.rfind("blocks-bad " + shown + ":", 0) == 0;
  EXPECT_TRUE(named) << ::testing::PrintToString(bad.sorted_lines());
}

TEST(FsckChecker, RepairCanGiveConflictCopiesOrdinaryNames) {
  TestVolume v;
  populate(v);
  const std::string m = " (conflicted copy 2026-12-02 101500)";
  const std::string c = v.cipher_path("/docs/report.txt");
  const std::string dir = c.substr(0, c.rfind('/') + 1);
  std::filesystem::copy_file(v.abs(c),
                             v.abs(dir + layout::conflict_backing_candidates(c.substr(dir.size()), m).front()));
  Options opt;
  opt.repair = true;
  EXPECT_EQ(v.check(opt).notice_count, 1u);  // --repair alone leaves it
  opt.rename_conflicts = true;
  Report r = v.check(opt);
  const std::string shown = "/docs/report (conflicted copy 2026-12-02 101500).txt";
  EXPECT_EQ(r.sorted_lines(),
            Lines{"conflict-copy " + shown +
                  ": a sync service's conflict copy, now under an ordinary name (this one) [renamed]"});
  EXPECT_EQ(v.check().sorted_lines(), Lines{});  // an ordinary file now
  EXPECT_EQ(read_all(v.abs(v.cipher_path(shown))), read_all(v.abs(c)));
}

// `mv logs logs.1; mkdir logs`: the new directory's derived IV is the one the old one kept.
TEST(FsckChecker, TwoDirectoriesWithOneIvAreANotice) {
  TestVolume v;
  v.mkdir("/logs");
  const std::string old = v.cipher_path("/logs");
  ASSERT_EQ(::rename(v.abs(old).c_str(), v.abs(v.cipher_path("/logs.1")).c_str()), 0);  // the IV file goes along
  v.mkdir("/logs");
  Report r = v.check();
  ASSERT_EQ(r.sorted_lines().size(), 1u);
  EXPECT_NE(r.sorted_lines()[0].find("dir-iv-shared /logs"), std::string::npos) << r.sorted_lines()[0];
  EXPECT_TRUE(r.clean());
  EXPECT_EQ(r.notice_count, 1u);
}

TEST(FsckChecker, TruncationAtABlockBoundaryIsNamedAsSuch) {
  TestVolume v;
  populate(v);
  const std::string path = v.abs(v.cipher_path("/docs/report.txt"));
  ASSERT_EQ(::truncate(path.c_str(), static_cast<off_t>(slot_offset(v, 2))), 0);  // blocks 0 and 1 remain
  const std::string line =
      "truncated /docs/report.txt: file ends at a block boundary without the final-block marker: data after block 1 "
      "is missing; every block before authenticates";
  EXPECT_EQ(v.check().sorted_lines(), Lines{line + " (--repair re-seals block 1 as the last)"});
  // What is left is authentic: --repair makes block 1 the last one, and the file reads as those two blocks.
  const auto before = read_all(path);
  Options repair;
  repair.repair = true;
  EXPECT_EQ(v.check(repair).sorted_lines(), Lines{line + " [repaired]"});
  EXPECT_EQ(v.check().sorted_lines(), Lines{});
  const auto whole = pattern(10000, 2);  // as populate() wrote it
  EXPECT_EQ(v.read_file("/docs/report.txt"), std::vector<uint8_t>(whole.begin(), whole.begin() + 2 * kB));
  EXPECT_NE(read_all(path), before);
}

TEST(FsckChecker, ACutWithABadBlockIsNotResealed) {
  TestVolume v;
  populate(v);
  const std::string path = v.abs(v.cipher_path("/docs/report.txt"));
  ASSERT_EQ(::truncate(path.c_str(), static_cast<off_t>(slot_offset(v, 2))), 0);
  auto bytes = read_all(path);
  bytes[slot_offset(v, 0) + 40] ^= 1;
  write_all(path, bytes);
  Options repair;
  repair.repair = true;
  EXPECT_EQ(v.check(repair).sorted_lines(),
            Lines{"blocks-bad /docs/report.txt: 2 of 2 blocks fail authentication (blocks 0-1)"});
  EXPECT_EQ(read_all(path), bytes) << "nothing is written to a file whose blocks do not all authenticate";
}

TEST(FsckChecker, TruncationInsideABlockFailsThatBlock) {
  TestVolume v;
  populate(v);
  const std::string path = v.abs(v.cipher_path("/docs/report.txt"));
  ASSERT_EQ(::truncate(path.c_str(), static_cast<off_t>(slot_offset(v, 2) + 500)), 0);
  EXPECT_EQ(v.check().sorted_lines(),
            Lines{"blocks-bad /docs/report.txt: 1 of 3 blocks fail authentication (block 2)"});
}

TEST(FsckChecker, HeaderWithoutBlocksIsTruncated) {
  TestVolume v;
  populate(v);
  const std::string path = v.abs(v.cipher_path("/one"));
  ASSERT_EQ(::truncate(path.c_str(), format::kFileHeaderSize), 0);
  const std::string line =
      "truncated /one: file has a header but no blocks: it reads as empty (a write or truncate was cut short)";
  EXPECT_EQ(v.check().sorted_lines(), Lines{line + "; --repair makes it an empty file"});
  Options repair;
  repair.repair = true;
  EXPECT_EQ(v.check(repair).sorted_lines(), Lines{line + " [repaired]"});
  EXPECT_EQ(read_all(path).size(), 0u);
  EXPECT_EQ(v.check().sorted_lines(), Lines{});
}

TEST(FsckChecker, SwappedBlocksFailBoth) {
  TestVolume v;
  v.write_file("/four", pattern(4 * kB, 9));
  const std::string path = v.abs(v.cipher_path("/four"));
  auto bytes = read_all(path);
  const size_t s = slot_size(v);
  std::swap_ranges(bytes.begin() + static_cast<long>(slot_offset(v, 1)),
                   bytes.begin() + static_cast<long>(slot_offset(v, 1) + s),
                   bytes.begin() + static_cast<long>(slot_offset(v, 2)));
  write_all(path, bytes);
  EXPECT_EQ(v.check().sorted_lines(), Lines{"blocks-bad /four: 2 of 4 blocks fail authentication (blocks 1-2)"});
}

TEST(FsckChecker, ZeroedDataBlockIsNotAcceptedAsAHole) {
  TestVolume v;
  v.write_file("/four", pattern(4 * kB, 10));
  const std::string path = v.abs(v.cipher_path("/four"));
  auto bytes = read_all(path);
  std::fill_n(bytes.begin() + static_cast<long>(slot_offset(v, 1)), slot_size(v), 0);
  write_all(path, bytes);
  EXPECT_EQ(v.check().sorted_lines(), Lines{"blocks-bad /four: 1 of 4 blocks fail authentication (block 1)"});
}

TEST(FsckChecker, DamageInTheBlockClaimingAHoleFailsTheHoleToo) {
  TestVolume v;
  // Growing to 2 blocks writes only the final block 1; block 0 stays a hole that block 1 claims.
  v.write_sparse("/sparse", 2 * kB, kB + 1000, pattern(100, 11));
  flip_byte(v.abs(v.cipher_path("/sparse")), slot_offset(v, 1) + 60);
  EXPECT_EQ(v.check().sorted_lines(), Lines{"blocks-bad /sparse: 2 of 2 blocks fail authentication (blocks 0-1)"});
}

TEST(FsckChecker, ForeignFileIsReportedAndNotOpened) {
  TestVolume v;
  populate(v);
  write_all(v.abs("notes.txt"), pattern(10, 12));
  write_all(v.abs(v.cipher_path("/docs") + "/.DS_Store"), pattern(10, 13));
  ASSERT_EQ(::mkdir(v.abs("veilfs.mystery").c_str(), 0700), 0);
  EXPECT_EQ(
      v.check().sorted_lines(),
      (Lines{"foreign-entry /docs/.DS_Store: not an encrypted name (hidden by the mount)",
             "foreign-entry /notes.txt: not an encrypted name (hidden by the mount)",
             "foreign-entry /veilfs.mystery: reserved name that veilfs does not use here (hidden by the mount)"}));
}

TEST(FsckChecker, NameMovedToAnotherDirectoryDoesNotDecrypt) {
  TestVolume v;
  populate(v);
  const std::string from = v.cipher_path("/one");
  const std::string to = v.cipher_path("/docs") + "/" + from;
  ASSERT_EQ(::rename(v.abs(from).c_str(), v.abs(to).c_str()), 0);
  EXPECT_EQ(v.check().sorted_lines(),
            Lines{"name-undecryptable /docs/" + from +
                  ": name does not decrypt in this directory (tampered, or moved from another directory)"});
}

TEST(FsckChecker, CorruptConfigIsReportedAndNothingElseIsChecked) {
  TestVolume v;
  populate(v);
  const std::string conf = v.abs("veilfs.conf");
  ::chmod(conf.c_str(), 0600);
  auto bytes = read_all(conf);
  std::string text(bytes.begin(), bytes.end());
  auto at = text.find("\"block_size\": 4096");
  ASSERT_NE(at, std::string::npos);
  text.replace(at, 18, "\"block_size\": 8192");
  write_all(conf, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
  Report r = check_volume(v.dir(), testing::passphrase(), {});
  EXPECT_FALSE(r.config_ok);
  EXPECT_EQ(r.sorted_lines(), Lines{"config-corrupt /: config checksum mismatch: the config file is corrupt"});
}

// An attacker who also fixes the checksum (say, to downgrade the cipher) is caught by the parameters' MAC.
TEST(FsckChecker, TamperedConfigParametersAreReported) {
  TestVolume v;
  const std::string conf = v.abs("veilfs.conf");
  ::chmod(conf.c_str(), 0600);
  auto bytes = read_all(conf);
  auto j = nlohmann::json::parse(bytes.begin(), bytes.end());
  j["block_size"] = 8192;
  j.erase("checksum");
  std::string body = j.dump();
  std::array<uint8_t, 32> sum{};
  blake2b(sum, {std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(body.data()), body.size())});
  j["checksum"] = hex_encode(sum);
  std::string text = j.dump(2);
  write_all(conf, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
  Report r = check_volume(v.dir(), testing::passphrase(), {});
  EXPECT_FALSE(r.config_ok);
  EXPECT_EQ(r.sorted_lines(),
            Lines{"config-corrupt /: config parameters (cipher, block size, features) were modified: refusing to "
                  "open"});
}

TEST(FsckChecker, WrongPassphraseIsNotDamage) {
  TestVolume v;
  const std::string wrong = "not the passphrase";
  try {
    check_volume(v.dir(), std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(wrong.data()), wrong.size()), {});
    FAIL() << "a wrong passphrase was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::WrongSecret);
  }
}

TEST(FsckChecker, TempLeftoversAreReportedThenRemovedByRepair) {
  TestVolume v;
  populate(v);
  const std::string docs = v.cipher_path("/docs");
  write_all(v.abs("veilfs.conf.tmp.0123456789abcdef"), pattern(30, 14));
  write_all(v.abs(docs + "/veilfs.diriv.tmp.fedcba9876543210"), pattern(16, 15));
  Lines expect{
      "temp-leftover /docs/veilfs.diriv.tmp.fedcba9876543210: temporary file left by an interrupted atomic write",
      "temp-leftover /veilfs.conf.tmp.0123456789abcdef: temporary file left by an interrupted atomic write"};
  EXPECT_EQ(v.check().sorted_lines(), expect);
  Options opt;
  opt.repair = true;
  for (auto& l : expect) l += " [removed]";
  EXPECT_EQ(v.check(opt).sorted_lines(), expect);
  EXPECT_FALSE(std::filesystem::exists(v.abs("veilfs.conf.tmp.0123456789abcdef")));
  EXPECT_EQ(v.check().sorted_lines(), Lines{});
}

TEST(FsckChecker, LongNameSidecarMissingOrMismatchedIsReported) {
  TestVolume v;
  populate(v);
  const std::string file = v.cipher_path("/docs/" + long_plain_name());
  const std::string short_name = std::filesystem::path(file).filename().string();
  ASSERT_EQ(::unlink(v.abs(file + ".name").c_str()), 0);
  EXPECT_EQ(v.check().sorted_lines(),
            Lines{"sidecar-missing /docs/" + short_name + ": long name without its sidecar (invisible in the mount)"});
  // A sidecar holding another long name: it does not hash to this short name.
  std::string other = v.encoded_name("/docs/" + std::string(220, 'M'));
  write_all(v.abs(file + ".name"),
            std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(other.data()), other.size()));
  const std::string saved = "/docs/veilfs-lost-name-" + short_name.substr(short_name.size() - 12);
  EXPECT_EQ(v.check().sorted_lines(),
            Lines{"sidecar-bad /docs/" + short_name +
                  ": sidecar does not match its hashed short name; the name is lost, not the contents: --repair "
                  "names it " +
                  saved});
}

// An empty sidecar next to its entry (a power cut before sidecars were synced): the name is lost, the contents are
// not; --repair gives the file a name of its own, under which it reads as before and the volume checks clean.
TEST(FsckChecker, AnEntryWithAnEmptySidecarIsSavedUnderANewName) {
  TestVolume v;
  populate(v);
  const std::string file = v.cipher_path("/docs/" + long_plain_name());
  const std::string short_name = std::filesystem::path(file).filename().string();
  ASSERT_EQ(::truncate(v.abs(file + ".name").c_str(), 0), 0);
  const std::string saved = "/docs/veilfs-lost-name-" + short_name.substr(short_name.size() - 12);
  Report before = v.check();
  ASSERT_EQ(before.sorted_lines().size(), 1u);
  EXPECT_EQ(before.sorted_lines()[0].rfind("sidecar-bad /docs/" + short_name + ": ", 0), 0u)
      << before.sorted_lines()[0];
  EXPECT_NE(before.sorted_lines()[0].find("; the name is lost, not the contents: --repair names it " + saved),
            std::string::npos)
      << before.sorted_lines()[0];
  Options repair;
  repair.repair = true;
  Report r = v.check(repair);
  ASSERT_EQ(r.sorted_lines().size(), 1u);
  EXPECT_NE(r.sorted_lines()[0].find("; the name is lost, not the contents: now " + saved + " [renamed]"),
            std::string::npos)
      << r.sorted_lines()[0];
  EXPECT_EQ(v.check().sorted_lines(), Lines{});
  EXPECT_EQ(v.read_file(saved), pattern(5000, 4));
  EXPECT_FALSE(std::filesystem::exists(v.abs(file))) << "the old long name is gone";
  EXPECT_FALSE(std::filesystem::exists(v.abs(file + ".name"))) << "and so is its damaged sidecar";
  // A second repair finds nothing to do.
  EXPECT_EQ(v.check(repair).sorted_lines(), Lines{});
}

TEST(FsckChecker, TamperedSymlinkTargetsAreReported) {
  TestVolume v;
  populate(v);
  const std::string link = v.cipher_path("/docs/link");
  const std::string longlink = v.cipher_path("/docs/longlink");
  const std::string docs = v.cipher_path("/docs");
  char buf[4096];
  ssize_t n = ::readlink(v.abs(link).c_str(), buf, sizeof buf);
  ASSERT_GT(n, 10);
  std::string target(buf, static_cast<size_t>(n));
  target[5] = target[5] == 'A' ? 'B' : 'A';
  ASSERT_EQ(::unlink(v.abs(link).c_str()), 0);
  ASSERT_EQ(::symlink(target.c_str(), v.abs(link).c_str()), 0);
  ASSERT_EQ(::unlink(v.abs(docs + "/veilfs.link." + std::filesystem::path(longlink).filename().string()).c_str()), 0);
  EXPECT_EQ(v.check().sorted_lines(),
            (Lines{"link-target-bad /docs/link: symlink target does not decrypt (tampered or foreign)",
                   "link-target-bad /docs/longlink: long target sidecar is missing"}));
}

TEST(FsckChecker, OrphanedLongLinkSidecarIsReported) {
  TestVolume v;
  populate(v);
  const std::string longlink = v.cipher_path("/docs/longlink");
  ASSERT_EQ(::unlink(v.abs(longlink).c_str()), 0);
  const std::string side = "veilfs.link." + std::filesystem::path(longlink).filename().string();
  EXPECT_EQ(v.check().sorted_lines(), Lines{"sidecar-orphaned /docs/" + side +
                                            ": long symlink target sidecar without a symlink that uses it"
                                            " (changed within the last day: perhaps its entry is still being synced)"});
}

TEST(FsckChecker, TamperedAndForeignXattrsAreReported) {
  TestVolume v;
  populate(v);
  const std::string path = v.abs(v.cipher_path("/docs/report.txt"));
  const std::string backing = *v.vol().xattrs().encrypt_name("user.comment");
  std::vector<uint8_t> val(200);
  ssize_t n = ::getxattr(path.c_str(), backing.c_str(), val.data(), val.size());
  ASSERT_GT(n, 30);
  val.resize(static_cast<size_t>(n));
  val[30] ^= 1;
  ASSERT_EQ(::setxattr(path.c_str(), backing.c_str(), val.data(), val.size(), 0), 0);
  ASSERT_EQ(::setxattr(path.c_str(), "user.foreign", "x", 1, 0), 0);
  ASSERT_EQ(::setxattr(path.c_str(), "user.veilfs.notbase64!", "x", 1, 0), 0);
  EXPECT_EQ(v.check().sorted_lines(),
            (Lines{"xattr-bad /docs/report.txt: attribute name user.veilfs.notbase64! does not decrypt",
                   "xattr-bad /docs/report.txt: value of attribute user.comment does not decrypt",
                   "xattr-foreign /docs/report.txt: attribute user.foreign was not written by veilfs"}));
}

TEST(FsckChecker, WrongSizedIvIsReported) {
  TestVolume v;
  populate(v);
  const std::string iv = v.abs(v.cipher_path("/docs/deep") + "/veilfs.diriv");
  ::chmod(iv.c_str(), 0600);
  write_all(iv, pattern(15, 16));  // torn, as a crash right after mkdir leaves it
  const std::string line =
      "dir-iv-bad /docs/deep: directory IV file veilfs.diriv is not a 16-byte regular file"
      "; every name decrypts under the derived IV";
  EXPECT_EQ(v.check().sorted_lines(), Lines{line + " (--repair writes it)"});
  Options repair;
  repair.repair = true;
  EXPECT_EQ(v.check(repair).sorted_lines(), Lines{line + " [written]"});
  EXPECT_EQ(v.check().sorted_lines(), Lines{});
}

TEST(FsckChecker, PoisonedRootIvIsReportedOnceAndNamesAreCheckedWithTheRightOne) {
  TestVolume v;
  populate(v);
  const std::string iv = v.abs("veilfs.diriv");
  ::chmod(iv.c_str(), 0600);
  write_all(iv, pattern(16, 18));
  EXPECT_EQ(v.check().sorted_lines(),
            Lines{"dir-iv-bad /: root directory IV file veilfs.diriv does not match the IV derived from the master key "
                  "(the mount shows no names under it)"});
}

TEST(FsckChecker, DepthLimitStopsTheWalkWithAReport) {
  TestVolume v;
  std::string p;
  for (int i = 0; i < 5; ++i) v.mkdir(p += "/d" + std::to_string(i));
  Options opt;
  opt.max_depth = 3;
  EXPECT_EQ(v.check(opt).sorted_lines(),
            Lines{"too-deep /d0/d1/d2: directory nesting deeper than 3 levels: not descended"});
}

TEST(FsckChecker, ProblemsBeyondTheKeptLimitAreCountedAndStreamed) {
  TestVolume v;
  for (int i = 0; i < 5; ++i) write_all(v.abs("stray" + std::to_string(i) + ".txt"), pattern(1, 17));
  size_t streamed = 0;
  Options opt;
  opt.max_kept_problems = 2;
  opt.on_problem = [&](const Problem&) { ++streamed; };
  Report r = v.check(opt);
  EXPECT_EQ(r.problems.size(), 2u);
  EXPECT_EQ(r.problem_count, 5u);
  EXPECT_EQ(streamed, 5u);
}

}  // namespace
}  // namespace veil::fsck
