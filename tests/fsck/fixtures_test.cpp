// The checked-in damaged volumes (tests/fsck/fixtures/<case>/cipher) and the exact report expected for each
// (expected.txt). Frozen bytes: they keep fsck and the on-disk format honest across versions.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "test_volume.hpp"

namespace veil::fsck {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> expected_lines(const fs::path& file) {
  std::ifstream in(file);
  std::vector<std::string> out;
  for (std::string l; std::getline(in, l);)
    if (!l.empty()) out.push_back(l);
  return out;
}

// fsck says when what is missing changed recently (a sync may still deliver it): the fixtures are old damage, so
// their copies get an old time whatever the checkout's.
void age(const fs::path& root) {
  const struct timespec old[2] = {{1600000000, 0}, {1600000000, 0}};
  for (const auto& e : fs::recursive_directory_iterator(root))
    ::utimensat(AT_FDCWD, e.path().c_str(), old, AT_SYMLINK_NOFOLLOW);
  ::utimensat(AT_FDCWD, root.c_str(), old, AT_SYMLINK_NOFOLLOW);
}

class FsckFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(FsckFixture, ReportsExactlyWhatIsExpected) {
  const fs::path src = fs::path(VEILFS_FSCK_FIXTURES) / GetParam();
  ASSERT_TRUE(fs::exists(src / "cipher" / "veilfs.conf")) << src;
  // Checked on a copy: fsck must not write, but a bug must not be able to alter the fixture either.
  char tmpl[] = "/tmp/veilfs-fsck-fixture-XXXXXX";
  ASSERT_TRUE(::mkdtemp(tmpl));
  const fs::path copy = fs::path(tmpl) / "cipher";
  fs::copy(src / "cipher", copy, fs::copy_options::recursive | fs::copy_options::copy_symlinks);
  age(copy);
  Report r = check_volume(copy.string(), testing::passphrase(), {});
  EXPECT_EQ(r.sorted_lines(), expected_lines(src / "expected.txt"));
  EXPECT_EQ(r.clean(), GetParam() == "clean");
  fs::remove_all(tmpl);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, FsckFixture,
                         ::testing::Values("clean", "flipped-bit", "missing-iv", "orphaned-sidecar", "truncated",
                                           "swapped-blocks", "foreign-file", "corrupt-config"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (auto& c : n)
                             if (c == '-') c = '_';
                           return n;
                         });

}  // namespace
}  // namespace veil::fsck
