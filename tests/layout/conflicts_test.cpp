// Sync services' conflict copies (layout/conflicts.hpp): recognizing the markers of Syncthing, Dropbox,
// Nextcloud and ownCloud in backing names, and showing them in plain names where the service would put them.
#include "veilfs/layout/conflicts.hpp"

#include <gtest/gtest.h>

namespace veil::testing {
namespace {

const std::string kEnc = "Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5";  // shaped like an encoded name
const std::string kLong = "veilfs.longname.AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_AbCdE";

TEST(Conflicts, EveryServiceMarkerIsRecognizedInBackingNames) {
  struct Case {
    std::string backing, original, marker;
  } cases[] = {
      {kEnc + ".sync-conflict-20261202-101500-ABCDEFG", kEnc, ".sync-conflict-20261202-101500-ABCDEFG"},
      {kEnc + " (conflicted copy 2026-12-02 101500)", kEnc, " (conflicted copy 2026-12-02 101500)"},
      {kEnc + " (Bob's conflicted copy 2026-12-02)", kEnc, " (Bob's conflicted copy 2026-12-02)"},
      {kEnc + "_conflict-20261202-101500", kEnc, "_conflict-20261202-101500"},
      {kEnc + " (conflict_on_2026-12-02)", kEnc, " (conflict_on_2026-12-02)"},
      {kEnc + " (conflict #1_on_2026-12-02)", kEnc, " (conflict #1_on_2026-12-02)"},
      {kEnc + " (conflict_on_2026-12-02_was_deleted)", kEnc, " (conflict_on_2026-12-02_was_deleted)"},
      {"veilfs.longname (conflict_on_2026-12-02).AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_AbCdE", kLong,
       " (conflict_on_2026-12-02)"},
      {kEnc + "~", kEnc, "~"},
      {kLong + "~", kLong, "~"},
      // Syncthing puts its marker before the extension: for a long name, before the hash.
      {"veilfs.longname.sync-conflict-20261202-101500-ABCDEFG.AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_AbCdE", kLong,
       ".sync-conflict-20261202-101500-ABCDEFG"},
  };
  for (const auto& c : cases) {
    auto copy = layout::parse_conflict_backing(c.backing);
    ASSERT_TRUE(copy) << c.backing;
    EXPECT_EQ(copy->original, c.original);
    EXPECT_EQ(copy->marker, c.marker);
  }
}

TEST(Conflicts, OrdinaryNamesAreNotConflictCopies) {
  for (std::string n : {kEnc, kLong, std::string("veilfs.diriv"), std::string("report.txt"), std::string("conflict"),
                        kEnc + ".sync-conflict-2026-ABCDEFG",  // malformed date
                        kEnc + " (conflicted copy", std::string(".sync-conflict-20261202-101500-ABCDEFG")})
    EXPECT_FALSE(layout::parse_conflict_backing(n)) << n;
}

TEST(Conflicts, TheMarkerGoesBeforeThePlainExtensionAndComesOutAgain) {
  const std::string m = ".sync-conflict-20261202-101500-ABCDEFG";
  EXPECT_EQ(layout::insert_conflict_marker("report.txt", m), "report.sync-conflict-20261202-101500-ABCDEFG.txt");
  EXPECT_EQ(layout::insert_conflict_marker("Makefile", m), "Makefile" + m);
  EXPECT_EQ(layout::insert_conflict_marker(".bashrc", m), ".bashrc" + m);  // a dotfile has no extension
  EXPECT_EQ(layout::insert_conflict_marker("a.tar.gz", " (conflicted copy 2026-12-02 101500)"),
            "a.tar (conflicted copy 2026-12-02 101500).gz");
  EXPECT_EQ(layout::insert_conflict_marker("report.txt", "~"), "report.txt~");  // rsync appends
  for (std::string plain : {"report.txt", "Makefile", ".bashrc", "a.tar.gz", "x y (1).odt"}) {
    for (std::string marker :
         {m, std::string(" (conflicted copy 2026-12-02 101500)"), std::string("_conflict-20261202-101500"),
          std::string(" (conflict_on_2026-12-02)"), std::string("~")}) {
      auto split = layout::split_conflict_name(layout::insert_conflict_marker(plain, marker));
      ASSERT_TRUE(split) << plain << marker;
      EXPECT_EQ(split->first, plain);
      EXPECT_EQ(split->second, marker);
    }
  }
  EXPECT_FALSE(layout::split_conflict_name("report.txt"));
}

TEST(Conflicts, SyncToolsOwnFilesAreRecognized) {
  for (const std::string& n : std::vector<std::string>{
           ".stfolder", ".stignore", ".stversions", ".syncthing." + kEnc + ".tmp", "~syncthing~" + kEnc + ".tmp",
           ".dropbox", ".dropbox.cache", ".sync_3f4e5d.db", ".sync_3f4e5d.db-wal", ".owncloudsync.log",
           ".nextcloudsync.log", ".unison.x.tmp", "." + kEnc + ".a1B2c3", "." + kLong + ".Zz9Yy8"})
    EXPECT_TRUE(layout::is_sync_service_file(n)) << n;
  for (const std::string& n : std::vector<std::string>{kEnc, kLong, "veilfs.diriv", ".hidden", "." + kEnc, "stfolder"})
    EXPECT_FALSE(layout::is_sync_service_file(n)) << n;
}

TEST(Conflicts, CandidatesArePlacementBeforeTheExtensionThenAtTheEnd) {
  const std::string m = ".sync-conflict-20261202-101500-ABCDEFG";
  EXPECT_EQ(layout::conflict_backing_candidates(kEnc, m), std::vector<std::string>{kEnc + m});
  auto c = layout::conflict_backing_candidates(kLong, m);
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(layout::parse_conflict_backing(c[0])->original, kLong);
  EXPECT_EQ(c[1], kLong + m);
}

}  // namespace
}  // namespace veil::testing
