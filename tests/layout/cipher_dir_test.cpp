// The cipher dir's own files (layout/cipher_dir.hpp), against a temporary directory: backing names and their
// classification, long-name and link sidecars, the undo guard for half-made entries, IV files, temp names.
#include "veilfs/layout/cipher_dir.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "../content/content_test_util.hpp"

namespace veil::testing {
namespace {

using layout::Reserved;

std::string long_encoded(char c = 'A', size_t n = 300) { return std::string(n, c); }

class CipherDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fd_ = UniqueFd(::open(dir_.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(fd_);
  }
  bool exists(const std::string& name) const {
    struct stat st;
    return ::fstatat(fd_.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
  }
  std::string text(const std::string& name) const {
    auto b = file_bytes(dir_.file(name));
    return std::string(b.begin(), b.end());
  }
  void put(const std::string& name, const std::string& s) {
    put_file_bytes(dir_.file(name), std::vector<uint8_t>(s.begin(), s.end()));
  }
  int errno_of(const std::function<void()>& fn) {
    try {
      fn();
    } catch (const Error& e) {
      return e.sys_errno();
    }
    return 0;
  }
  ScratchDir dir_;
  UniqueFd fd_;
};

TEST_F(CipherDirTest, ShortNamesAreStoredAsTheyAreLongOnesUnderTheirHash) {
  std::string shortname(format::kMaxBackingNameSize, 'x');
  EXPECT_FALSE(layout::needs_long_name(shortname));
  EXPECT_EQ(layout::backing_name(shortname), shortname);
  std::string longname = shortname + "x";
  ASSERT_TRUE(layout::needs_long_name(longname));
  std::string b = layout::backing_name(longname);
  EXPECT_EQ(b.rfind("veilfs.longname.", 0), 0u) << b;
  EXPECT_EQ(b.size(), std::string("veilfs.longname.").size() + 43);
  EXPECT_TRUE(layout::is_long_name(b));
  EXPECT_NE(layout::backing_name(longname + "y"), b);  // the hash tells names apart
  EXPECT_EQ(layout::name_sidecar_of(b), b + ".name");
  EXPECT_FALSE(layout::is_long_name(layout::name_sidecar_of(b)));
  EXPECT_FALSE(layout::is_long_name("veilfs.longname.short"));
}

TEST_F(CipherDirTest, EveryReservedNameIsClassified) {
  std::string ln = layout::long_name_for(long_encoded());
  EXPECT_EQ(layout::classify("abcdef"), Reserved::None);
  EXPECT_EQ(layout::classify("veilfs.conf"), Reserved::Config);
  EXPECT_EQ(layout::classify("veilfs.diriv"), Reserved::DirIv);
  EXPECT_EQ(layout::classify(ln), Reserved::LongName);
  EXPECT_EQ(layout::classify(layout::name_sidecar_of(ln)), Reserved::NameSidecar);
  EXPECT_EQ(layout::sidecar_owner(layout::name_sidecar_of(ln), Reserved::NameSidecar), ln);
  EXPECT_EQ(layout::classify(layout::link_sidecar_of("abc")), Reserved::LinkSidecar);
  EXPECT_EQ(layout::sidecar_owner(layout::link_sidecar_of("abc"), Reserved::LinkSidecar), "abc");
  EXPECT_EQ(layout::classify(layout::temp_name_for("veilfs.conf")), Reserved::Temp);
  EXPECT_EQ(layout::classify("veilfs.link."), Reserved::Unknown);
  EXPECT_EQ(layout::classify("veilfs.longname.short"), Reserved::Unknown);
  EXPECT_EQ(layout::classify("veilfs.whatever"), Reserved::Unknown);
  for (auto n : {"veilfs.conf", "veilfs.diriv", "veilfs.whatever"}) EXPECT_TRUE(layout::is_reserved(n)) << n;
  EXPECT_FALSE(layout::is_reserved("xveilfs.conf"));
}

TEST_F(CipherDirTest, LinkSidecarOfANearMaximalBackingNameStillFits) {
  EXPECT_EQ(layout::link_sidecar_of("abc"), "veilfs.link.abc");
  std::string near(250, 'b');
  std::string side = layout::link_sidecar_of(near);
  EXPECT_LE(side.size(), format::kMaxBackingNameSize);
  EXPECT_EQ(layout::classify(side), Reserved::LinkSidecar);
  EXPECT_NE(side, layout::link_sidecar_of(std::string(250, 'c')));
}

TEST_F(CipherDirTest, TempNamesOfAtomicReplaces) {
  std::string t = layout::temp_name_for("veilfs.conf");
  EXPECT_TRUE(layout::is_temp_file(t));
  EXPECT_TRUE(layout::is_config_temp(t));
  std::string iv_tmp = layout::temp_name_for("veilfs.diriv");
  EXPECT_TRUE(layout::is_temp_file(iv_tmp));
  EXPECT_FALSE(layout::is_config_temp(iv_tmp));
  EXPECT_NE(layout::temp_name_for("veilfs.conf"), t);  // random
  EXPECT_FALSE(layout::is_temp_file("veilfs.conf.tmp.00112233aabbccdX"));
  EXPECT_FALSE(layout::is_temp_file("veilfs.conf.tmp.0011"));
  EXPECT_FALSE(layout::is_temp_file("abc.tmp.00112233aabbccdd"));  // not one of ours: an encoded name
  EXPECT_FALSE(layout::is_config_temp("veilfs.conf.tmp.00112233aabbccdd.x"));
}

TEST_F(CipherDirTest, LongNameReadsBackFromItsSidecar) {
  std::string enc = long_encoded();
  std::string b = layout::backing_name(enc);
  {
    layout::EntryUndo undo;
    layout::add_name_sidecar(undo, fd_.get(), b, enc, true);
    undo.dismiss();
  }
  EXPECT_EQ(layout::read_long_name(fd_.get(), b), enc);
  EXPECT_EQ(layout::encoded_name_of(fd_.get(), b), enc);
  EXPECT_EQ(layout::encoded_name_of(fd_.get(), "short"), "short");
}

TEST_F(CipherDirTest, LongNameSidecarsThatLieAreRefused) {
  std::string enc = long_encoded();
  std::string b = layout::backing_name(enc);
  std::string side = layout::name_sidecar_of(b);
  EXPECT_EQ(errno_of([&] { layout::read_long_name(fd_.get(), b); }), ENOENT);

  put(side, long_encoded('B'));  // another name's: does not hash to b
  EXPECT_EQ(error_kind_of([&] { layout::read_long_name(fd_.get(), b); }), ErrorKind::Corrupt);

  // A short name under a hashed entry would give that name two entries: the mount and fsck both refuse it.
  std::string shortname = "c2hvcnQ";
  std::string sb = layout::long_name_for(shortname);
  put(layout::name_sidecar_of(sb), shortname);
  try {
    layout::read_long_name(fd_.get(), sb);
    ADD_FAILURE() << "accepted a short name in a sidecar";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Corrupt);
    EXPECT_STREQ(e.what(), "sidecar holds a name short enough to be stored directly");
  }
}

TEST_F(CipherDirTest, HostileSidecarsAreJudgedWithoutReadingThem) {
  std::string b = layout::backing_name(long_encoded());
  std::string side = layout::name_sidecar_of(b);
  // A FIFO would block a reader for ever; a symlink would be followed; a sparse giant would be read.
  ASSERT_EQ(::mkfifoat(fd_.get(), side.c_str(), 0600), 0);
  EXPECT_EQ(error_kind_of([&] { layout::read_long_name(fd_.get(), b); }), ErrorKind::Corrupt);
  ASSERT_EQ(::unlinkat(fd_.get(), side.c_str(), 0), 0);
  ASSERT_EQ(::symlinkat("/etc/passwd", fd_.get(), side.c_str()), 0);
  EXPECT_EQ(error_kind_of([&] { layout::read_long_name(fd_.get(), b); }), ErrorKind::Corrupt);
  ASSERT_EQ(::unlinkat(fd_.get(), side.c_str(), 0), 0);
  put(side, "");
  truncate_file(dir_.file(side), uint64_t{1} << 40);
  try {
    layout::read_long_name(fd_.get(), b);
    ADD_FAILURE() << "accepted a 1 TiB sidecar";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Corrupt);
    EXPECT_NE(std::string(e.what()).find("(not read)"), std::string::npos) << e.what();
  }
}

TEST_F(CipherDirTest, UndoRemovesWhatWasMadeNewestFirstUnlessDismissed) {
  std::string enc = long_encoded();
  std::string b = layout::backing_name(enc);
  std::vector<std::string> failures;
  {
    layout::EntryUndo undo([&](const std::string& n) { failures.push_back(n); });
    layout::add_name_sidecar(undo, fd_.get(), b, enc, true);
    ASSERT_EQ(::mkdirat(fd_.get(), b.c_str(), 0700), 0);
    undo.created_dir(fd_.get(), b);
    DirIv iv{};
    iv[0] = 7;
    layout::add_dir_iv(undo, fd_.get(), b, iv);
    ASSERT_TRUE(exists(b + "/veilfs.diriv"));
    // Leaves scope without dismiss(), as an exception would: IV file, then directory, then sidecar go.
  }
  EXPECT_FALSE(exists(b));
  EXPECT_FALSE(exists(layout::name_sidecar_of(b)));
  EXPECT_TRUE(failures.empty());
  {
    layout::EntryUndo undo;
    layout::add_name_sidecar(undo, fd_.get(), b, enc, true);
    ASSERT_EQ(::mkdirat(fd_.get(), b.c_str(), 0700), 0);
    undo.created_dir(fd_.get(), b);
    undo.dismiss();
  }
  EXPECT_TRUE(exists(b));
  EXPECT_EQ(layout::read_long_name(fd_.get(), b), enc);
}

TEST_F(CipherDirTest, UndoThatCannotCompleteIsReportedByBackingName) {
  std::vector<std::string> failures;
  {
    layout::EntryUndo undo([&](const std::string& n) { failures.push_back(n); });
    ASSERT_EQ(::mkdirat(fd_.get(), "d", 0700), 0);
    undo.created_dir(fd_.get(), "d");
    put("d/other", "x");  // something the undo did not make: the directory must stay
  }
  EXPECT_TRUE(exists("d/other"));
  EXPECT_EQ(failures, std::vector<std::string>{"d"});
}

TEST_F(CipherDirTest, NameSidecarOfAnExistingEntryIsEexistAndSurvivesTheUndo) {
  std::string enc = long_encoded();
  std::string b = layout::backing_name(enc);
  put(layout::name_sidecar_of(b), enc);
  put(b, "");
  {
    layout::EntryUndo undo;
    EXPECT_EQ(errno_of([&] { layout::add_name_sidecar(undo, fd_.get(), b, enc, true); }), EEXIST);
  }
  EXPECT_EQ(layout::read_long_name(fd_.get(), b), enc);
  // An orphan (entry gone, e.g. a crash before the entry was made) is reused, and not undone: it was not ours.
  ASSERT_EQ(::unlinkat(fd_.get(), b.c_str(), 0), 0);
  {
    layout::EntryUndo undo;
    layout::add_name_sidecar(undo, fd_.get(), b, enc, true);
  }
  EXPECT_TRUE(exists(layout::name_sidecar_of(b)));
  // A short name has no sidecar.
  {
    layout::EntryUndo undo;
    layout::add_name_sidecar(undo, fd_.get(), "short", "short", true);
    undo.dismiss();
  }
  EXPECT_FALSE(exists("short.name"));
}

TEST_F(CipherDirTest, LongLinkTargetsGoToASidecarAndFollowRenames) {
  layout::EntryUndo undo;
  std::string shortt(format::kMaxInlineLinkSize, 's');
  EXPECT_EQ(layout::add_link_target(undo, fd_.get(), "a", shortt), shortt);
  EXPECT_FALSE(exists(layout::link_sidecar_of("a")));

  std::string longt(format::kMaxInlineLinkSize + 1, 'l');
  put(layout::link_sidecar_of("b"), "orphan from a crash");
  std::string held = layout::add_link_target(undo, fd_.get(), "b", longt);
  EXPECT_TRUE(layout::is_long_link_marker(held));
  EXPECT_TRUE(layout::link_target_is_long(longt));
  ASSERT_EQ(::symlinkat(held.c_str(), fd_.get(), "b"), 0);
  undo.dismiss();
  EXPECT_EQ(layout::read_link_target(fd_.get(), "b"), longt);

  ASSERT_EQ(::renameat(fd_.get(), "b", fd_.get(), "c"), 0);
  layout::move_link_sidecar(fd_.get(), "b", fd_.get(), "c");
  EXPECT_EQ(layout::read_link_target(fd_.get(), "c"), longt);
  EXPECT_FALSE(exists(layout::link_sidecar_of("b")));

  ASSERT_EQ(::symlinkat(shortt.c_str(), fd_.get(), "a"), 0);
  ASSERT_EQ(::renameat2(fd_.get(), "a", fd_.get(), "c", RENAME_EXCHANGE), 0);
  layout::exchange_link_sidecars(fd_.get(), "a", false, fd_.get(), "c", true);
  EXPECT_EQ(layout::read_link_target(fd_.get(), "a"), longt);
  EXPECT_EQ(layout::read_link_target(fd_.get(), "c"), shortt);

  layout::remove_side_files(fd_.get(), "a", /*symlink=*/true);
  EXPECT_FALSE(exists(layout::link_sidecar_of("a")));
  EXPECT_EQ(errno_of([&] { layout::read_link_target(fd_.get(), "a"); }), ENOENT);
}

TEST_F(CipherDirTest, OversizedLinkSidecarIsCorruptNotRead) {
  ASSERT_EQ(::symlinkat(std::string(format::kLongLinkMarker).c_str(), fd_.get(), "l"), 0);
  put(layout::link_sidecar_of("l"), std::string(format::kMaxStoredLinkSize + 1, 'x'));
  EXPECT_EQ(error_kind_of([&] { layout::read_link_target(fd_.get(), "l"); }), ErrorKind::Corrupt);
}

TEST_F(CipherDirTest, DirIvIsStrippedRestoredAndPersisted) {
  const layout::Access a{.as_root = ::geteuid() == 0};
  ASSERT_EQ(::mkdirat(fd_.get(), "d", 0700), 0);
  DirIv iv{};
  iv[3] = 9;
  {
    layout::EntryUndo undo;
    layout::add_dir_iv(undo, fd_.get(), "d", iv);
    undo.dismiss();
  }
  auto stripped = layout::strip_dir_iv(fd_.get(), "d", a);
  EXPECT_EQ(stripped, iv);
  EXPECT_FALSE(exists("d/veilfs.diriv"));
  EXPECT_EQ(layout::strip_dir_iv(fd_.get(), "d", a), std::nullopt);  // nothing left to strip
  {
    layout::EntryUndo undo;
    undo.stripped_dir_iv(fd_.get(), "d", iv, a);  // the removal failed: it comes back
  }
  UniqueFd d = layout::open_dir(fd_.get(), "d");
  EXPECT_EQ(layout::read_dir_iv(d.get()), iv);

  // persist_dir_iv keeps an intact IV file and only fills in a missing or torn one.
  int asked = 0;
  DirIv other{};
  other[0] = 1;
  auto derive = [&] {
    ++asked;
    return other;
  };
  layout::persist_dir_iv(fd_.get(), "d", derive, a);
  EXPECT_EQ(asked, 0);
  EXPECT_EQ(layout::read_dir_iv(d.get()), iv);
  put("d/veilfs.diriv", "torn");
  bool torn = false;
  EXPECT_EQ(layout::read_dir_iv_if_intact(d.get(), &torn), std::nullopt);
  EXPECT_TRUE(torn);
  layout::persist_dir_iv(fd_.get(), "d", derive, a);
  EXPECT_EQ(asked, 1);
  EXPECT_EQ(layout::read_dir_iv(d.get()), other);
}

TEST_F(CipherDirTest, ConfigIsReplacedAtomicallyAndMissingMeansNotAVolume) {
  EXPECT_EQ(error_kind_of([&] { layout::load_config(fd_.get()); }), ErrorKind::NotFound);
  std::vector<uint8_t> a{1, 2, 3};
  layout::replace_file(fd_.get(), "veilfs.diriv", a, 0444);
  EXPECT_EQ(file_bytes(dir_.file("veilfs.diriv")), a);
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir_.path())) names.push_back(e.path().filename());
  EXPECT_EQ(names, std::vector<std::string>{"veilfs.diriv"});  // no temp file left
}

}  // namespace
}  // namespace veil::testing
