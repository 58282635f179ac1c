// A daemon run by an ordinary user (no root privileges): it must still do what a local disk lets that user do,
// including writing a file its owner may only write (mode 0200), which the daemon must read to re-encrypt.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

#include "harness.hpp"

namespace veiltest {
namespace {

// /dev/fuse is 0600 on some machines (no udev rule): let ordinary users at it for the test, then put it back.
class DevFuseOpenToUsers {
 public:
  DevFuseOpenToUsers() {
    struct stat st {};
    if (::stat("/dev/fuse", &st) == 0 && (st.st_mode & 0006) != 0006) {
      old_mode_ = st.st_mode & 07777;
      changed_ = ::chmod("/dev/fuse", 0666) == 0;
    }
  }
  ~DevFuseOpenToUsers() {
    if (changed_) ::chmod("/dev/fuse", old_mode_);
  }

 private:
  mode_t old_mode_ = 0;
  bool changed_ = false;
};

// Runs the daemon as nobody with mount_options (e.g. "-o default_permissions", under which the kernel checks
// permissions and the daemon takes no OPEN requests; without it, OPEN is the daemon's permission check).
void owner_can_write_a_write_only_file_but_not_a_read_only_one(const std::string& mount_options) {
  // Under /tmp, not the build tree: the ordinary user must be able to reach it.
  char tmpl[] = "/tmp/veilfs-nonroot-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string d = tmpl;
  ASSERT_EQ(::chmod(d.c_str(), 0755), 0);
  DevFuseOpenToUsers dev_fuse;
  const std::string as_user = "setpriv --reuid=65534 --regid=65534 --clear-groups ";
  const std::string c = std::string(kContentMarker) + "-abcdef";
  auto r = sh("D=" + d + "\nU='" + as_user + "'\n" +
              "mkdir $D/c $D/m\n"
              "printf 'nonroot pass\\n' > $D/pf\n"
              "chown -R 65534:65534 $D\n"
              "$U '" +
              mkvol_binary() +
              "' $D/c $D/pf\n"
              "$U '" +
              veilfs_binary() + "' " + mount_options +
              " --passfile $D/pf $D/c $D/m\n"
              "trap 'fusermount3 -u $D/m' EXIT\n"
              "$U sh -ec '\n"
              "  cd " +
              d +
              "/m\n"
              "  printf %s " +
              c +
              " > f\n"
              "  chmod 0200 f\n"
              "  printf X | dd of=f bs=1 seek=1 conv=notrunc status=none\n"
              "  truncate -s 10 f\n"
              "  chmod 0600 f\n"
              "  cat f; echo\n"
              "  stat -c %a f\n"
              // A read-only file refuses writes even though the daemon still holds it open read-write.
              "  printf y > ro\n"
              "  chmod 0444 ro\n"
              "  if (printf z >> ro) 2>/dev/null; then echo WROTE-READONLY; fi\n"
              "  cat ro; echo'\n");
  std::string expect = c.substr(0, 10);
  expect[1] = 'X';
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find(expect + "\n600\ny\n"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("WROTE-READONLY"), std::string::npos) << r.output;
  std::system(("rm -rf '" + d + "'").c_str());
}

bool can_switch_users() {
  if (::geteuid() == 0) return true;
  print_loud_skip("the non-root daemon test needs root to switch to an ordinary user");
  return false;
}

TEST(NonRootDaemon, OwnerCanWriteAWriteOnlyFileButNotAReadOnlyOne) {
  VEILTEST_SKIP_WITHOUT_FUSE();
  if (!can_switch_users()) GTEST_SKIP() << "not root";
  owner_can_write_a_write_only_file_but_not_a_read_only_one("");
}

TEST(NonRootDaemon, SameWithKernelPermissionChecksAndNoOpenRequests) {
  VEILTEST_SKIP_WITHOUT_FUSE();
  if (!can_switch_users()) GTEST_SKIP() << "not root";
  owner_can_write_a_write_only_file_but_not_a_read_only_one("-o default_permissions");
}

}  // namespace
}  // namespace veiltest
