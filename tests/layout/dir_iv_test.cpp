// The per-directory IV file: written atomically, read back, missing -> nullopt, wrong size -> Corrupt.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>

#include <algorithm>

#include "../content/content_test_util.hpp"
#include "veilfs/layout/cipher_dir.hpp"

namespace veil::testing {
namespace {

std::vector<std::string> entries(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

class DirIvFile : public ::testing::Test {
 protected:
  void SetUp() override {
    fd_ = UniqueFd(::open(dir_.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(fd_);
  }
  ScratchDir dir_;
  UniqueFd fd_;
};

TEST_F(DirIvFile, WrittenIvReadsBackAndLeavesNoTempFile) {
  DirIv iv;
  random_fill(iv);
  layout::write_dir_iv(fd_.get(), iv);
  EXPECT_EQ(layout::read_dir_iv(fd_.get()), iv);
  EXPECT_EQ(entries(dir_.path()), std::vector<std::string>{std::string(format::kDirIvName)});
  EXPECT_EQ(file_bytes(dir_.file(std::string(format::kDirIvName))).size(), format::kDirIvSize);
}

TEST_F(DirIvFile, MissingFileIsNullopt) { EXPECT_EQ(layout::read_dir_iv(fd_.get()), std::nullopt); }

TEST_F(DirIvFile, WrongSizeIsCorrupt) {
  for (size_t n : {size_t{0}, size_t{15}, size_t{17}, size_t{4096}}) {
    SCOPED_TRACE(n);
    put_file_bytes(dir_.file(std::string(format::kDirIvName)), std::vector<uint8_t>(n, 7));
    EXPECT_EQ(error_kind_of([&] { layout::read_dir_iv(fd_.get()); }), ErrorKind::Corrupt);
  }
}

TEST_F(DirIvFile, ADirectoryInPlaceOfTheIvFileIsCorrupt) {
  ASSERT_EQ(::mkdir(dir_.file(std::string(format::kDirIvName)).c_str(), 0700), 0);
  auto kind = error_kind_of([&] { layout::read_dir_iv(fd_.get()); });
  EXPECT_TRUE(kind == ErrorKind::Corrupt || kind == ErrorKind::Io);
}

TEST_F(DirIvFile, RewriteReplacesAtomically) {
  DirIv a, b;
  random_fill(a);
  random_fill(b);
  layout::write_dir_iv(fd_.get(), a);
  // A leftover temp file from an interrupted replace does not disturb reading or the next write.
  put_file_bytes(dir_.file(std::string(format::kDirIvName) + ".tmp.00112233aabbccdd"), {1, 2, 3});
  EXPECT_EQ(layout::read_dir_iv(fd_.get()), a);
  layout::write_dir_iv(fd_.get(), b);
  EXPECT_EQ(layout::read_dir_iv(fd_.get()), b);
}

}  // namespace
}  // namespace veil::testing
