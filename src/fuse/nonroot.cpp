#include "fuse/nonroot.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include "veilfs/util/error.hpp"

namespace veil::fuse {

UniqueFd open_as_owner_rw(int path_fd, const std::function<UniqueFd()>& open_rdwr) {
  struct stat st;
  check_errno(::fstat(path_fd, &st));
  if (st.st_uid != ::geteuid() || (st.st_mode & (S_IRUSR | S_IWUSR)) == (S_IRUSR | S_IWUSR)) throw_errno(EACCES);
  const ProcPath proc(path_fd);
  check_errno(::chmod(proc.c_str(), (st.st_mode & 07777) | S_IRUSR | S_IWUSR));
  UniqueFd fd;
  int err = 0;
  try {
    fd = open_rdwr();
  } catch (const Error& e) {
    err = e.sys_errno() ? e.sys_errno() : EIO;
  }
  if (::chmod(proc.c_str(), st.st_mode & 07777) != 0 && !err) err = errno;
  if (err) throw_errno(err);
  return fd;
}

}  // namespace veil::fuse
