// A block that fails authentication reads as EIO for that range only; the rest of the file and the volume keep
// working, and the daemon logs the problem without naming the file.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.hpp"

namespace veiltest {
namespace {

class Tamper : public ::testing::Test {
 protected:
  void SetUp() override { VEILTEST_SKIP_WITHOUT_FUSE(); }
};

// Backing regular files of the cipher dir (the volume's own files excluded), by size.
std::vector<std::pair<std::string, off_t>> backing_files(const std::string& dir) {
  std::vector<std::pair<std::string, off_t>> out;
  for (const auto& n : list_dir(dir)) {
    if (n.rfind("veilfs.", 0) == 0) continue;
    struct stat st {};
    std::string p = dir + "/" + n;
    if (::lstat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode)) out.emplace_back(p, st.st_size);
  }
  return out;
}

TEST_F(Tamper, AFlippedBitGivesEIOForItsBlockOnly) {
  const size_t kBlock = 4096, kBlocks = 5;
  VolumeDir vol("tamper");
  ASSERT_NO_ERROR(vol.create());
  std::string victim = marker_content(kBlocks * kBlock, 50), bystander = marker_content(3000, 51);
  {
    Mount m(vol);
    ASSERT_TRUE(m.ok()) << m.error();
    write_file(vol.mnt + "/veilmark_victim", victim);
    write_file(vol.mnt + "/veilmark_bystander", bystander);
    ASSERT_NO_ERROR(m.unmount());
  }
  auto files = backing_files(vol.cipher);
  ASSERT_EQ(files.size(), 2u);
  const auto& [path, size] = files[0].second > files[1].second ? files[0] : files[1];
  // Header, then one slot per block of equal size: flip a bit in the middle of block 2's slot.
  const off_t header = 20, slot = (size - header) / static_cast<off_t>(kBlocks);
  ASSERT_GT(slot, static_cast<off_t>(kBlock));
  {
    UniqueFd fd(::open(path.c_str(), O_RDWR));
    ASSERT_TRUE(fd);
    std::string b = read_fd_at(fd.get(), static_cast<uint64_t>(header + 2 * slot + slot / 2), 1);
    b[0] ^= 0x10;
    write_fd_at(fd.get(), static_cast<uint64_t>(header + 2 * slot + slot / 2), b);
  }
  Mount m(vol);
  ASSERT_TRUE(m.ok()) << m.error();
  UniqueFd fd(::open((vol.mnt + "/veilmark_victim").c_str(), O_RDONLY));
  ASSERT_TRUE(fd) << err_name(errno);
  struct stat st {};
  ASSERT_EQ(::fstat(fd.get(), &st), 0);
  EXPECT_EQ(static_cast<size_t>(st.st_size), victim.size());
  for (size_t i = 0; i < kBlocks; ++i) {
    std::string buf(kBlock, '\0');
    ssize_t n = ::pread(fd.get(), buf.data(), kBlock, static_cast<off_t>(i * kBlock));
    if (i == 2) {
      EXPECT_EQ(n, -1) << "the tampered block must not read as data";
      if (n == -1) {
        EXPECT_EQ(errno, EIO) << err_name(errno);
      }
    } else {
      EXPECT_EQ(n, static_cast<ssize_t>(kBlock)) << "block " << i << ": " << (n < 0 ? err_name(errno) : "short read");
      if (n == static_cast<ssize_t>(kBlock)) {
        EXPECT_EQ(buf, victim.substr(i * kBlock, kBlock)) << "block " << i;
      }
    }
  }
  EXPECT_ANY_THROW(read_file(vol.mnt + "/veilmark_victim")) << "reading the whole file must fail, not return forgery";
  EXPECT_EQ(read_file(vol.mnt + "/veilmark_bystander"), bystander);
  write_file(vol.mnt + "/veilmark_after", "the volume keeps working");
  EXPECT_EQ(read_file(vol.mnt + "/veilmark_after"), "the volume keeps working");
  fd.reset();
  ASSERT_NO_ERROR(m.unmount());
  std::string log = m.log();
  EXPECT_NE(log, "") << "an authentication failure must be logged";
  EXPECT_EQ(log.find(kNameMarker), std::string::npos) << "the log must not name the file:\n" << log;
  EXPECT_EQ(log.find(kContentMarker), std::string::npos) << log;
}

}  // namespace
}  // namespace veiltest
