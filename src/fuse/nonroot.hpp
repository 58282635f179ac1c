// What a daemon that is not root needs in order to act like a local disk for the owner of the files: objects are
// reached through /proc/self/fd paths of cached O_PATH descriptors (chmod, access, xattrs and reopening all take
// paths), and the owner may open a file read-write although its mode says only one of the two (mode 0200:
// partial-block writes must read first). Root needs only the paths.
#pragma once

#include <cstdio>
#include <functional>

#include "veilfs/util/unique_fd.hpp"

namespace veil::fuse {

// "/proc/self/fd/N" of a descriptor, without an allocation.
struct ProcPath {
  char buf[40];
  explicit ProcPath(int fd) { std::snprintf(buf, sizeof buf, "/proc/self/fd/%d", fd); }
  const char* c_str() const { return buf; }
};

// Opens (with open_rdwr) the object of path_fd read-write for its owner although its mode lacks owner read or
// write: adds them for the open, then restores the mode. EACCES for anyone but the owner, as on a local disk.
UniqueFd open_as_owner_rw(int path_fd, const std::function<UniqueFd()>& open_rdwr);

}  // namespace veil::fuse
