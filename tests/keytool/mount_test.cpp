// After `veilkey passwd`, the real veilfs mounts the volume with the new passphrase (and no longer with the old
// one) and reads back every byte written through an earlier mount. Built only when the veilfs target exists.
#include <fcntl.h>
#include <sys/stat.h>

#include <cstdio>

#include "fixture.hpp"
#include "veilfs/cli/exit_codes.hpp"
#include "veilfs/crypto/random.hpp"

namespace veil::test {
namespace {

constexpr const char* kFusermount = "/usr/bin/fusermount3";

std::string fuse_missing_reason() {
  int fd = ::open("/dev/fuse", O_RDWR | O_CLOEXEC);
  if (fd < 0) return "/dev/fuse cannot be opened";
  ::close(fd);
  if (::access(kFusermount, X_OK) != 0) return "fusermount3 is not installed";
  return "";
}

bool is_mounted(const std::string& path) {
  std::ifstream mi("/proc/self/mountinfo");
  std::string line;
  while (std::getline(mi, line))
    if (line.find(" " + path + " ") != std::string::npos) return true;
  return false;
}

// veilfs without -f returns once the mount is live (it daemonizes after mounting); the guard unmounts on
// every path out of the test so that a failure never leaves a mount behind.
class MountGuard {
 public:
  explicit MountGuard(std::string mnt) : mnt_(std::move(mnt)) {}
  ~MountGuard() {
    if (is_mounted(mnt_)) run_program(kFusermount, {"-u", "-z", mnt_});
  }
  RunResult unmount() { return run_program(kFusermount, {"-u", mnt_}); }

 private:
  std::string mnt_;
};

using MountAfterPasswdTest = KeytoolTest;

TEST_F(MountAfterPasswdTest, NewPassphraseMountsAndReadsEveryByteWrittenBefore) {
  if (auto why = fuse_missing_reason(); !why.empty()) {
    std::fprintf(stderr, "\n!!!!!!!! SKIPPING the veilkey mount test: %s !!!!!!!!\n\n", why.c_str());
    GTEST_SKIP() << why;
  }
  init_volume("old pass");
  const std::string mnt = root_ + "/mnt";
  ASSERT_TRUE(std::filesystem::create_directory(mnt));
  MountGuard guard(mnt);

  std::map<std::string, std::string> files;
  for (size_t size : {0u, 1u, 4095u, 4096u, 4097u, 1000000u}) {
    std::string data(size, '\0');
    random_fill(std::span<uint8_t>(reinterpret_cast<uint8_t*>(data.data()), data.size()));
    files[numbered("f", size)] = data;
  }
  files["sub/dir/nested.txt"] = "written before passwd\n";

  auto r = run_program(VEILFS_BIN, {"--passfile", passfile("old pass"), vol_, mnt});
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_TRUE(is_mounted(mnt));
  std::filesystem::create_directories(mnt + "/sub/dir");
  for (const auto& [name, data] : files) {
    std::ofstream f(mnt + "/" + name, std::ios::binary);
    f << data;
    f.close();
    ASSERT_TRUE(f) << name;
  }
  r = guard.unmount();
  ASSERT_EQ(r.code, 0) << r.err;

  r = run_veilkey({"passwd", vol_}, with_stdin("old pass\nnew pass\n"));
  ASSERT_EQ(r.code, 0) << r.err;

  r = run_program(VEILFS_BIN, {"--passfile", passfile("old pass"), vol_, mnt});
  EXPECT_EQ(r.code, cli::kExitWrongSecret) << r.err;
  ASSERT_FALSE(is_mounted(mnt));

  r = run_program(VEILFS_BIN, {"--passfile", passfile("new pass"), vol_, mnt});
  ASSERT_EQ(r.code, 0) << r.err;
  for (const auto& [name, data] : files) {
    std::ifstream f(mnt + "/" + name, std::ios::binary);
    ASSERT_TRUE(f) << name;
    std::string back((std::istreambuf_iterator<char>(f)), {});
    EXPECT_EQ(back.size(), data.size()) << name;
    EXPECT_TRUE(back == data) << name << " differs";
  }
  r = guard.unmount();
  EXPECT_EQ(r.code, 0) << r.err;
}

}  // namespace
}  // namespace veil::test
