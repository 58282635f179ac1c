// Shared helpers for the tests that drive Fs and InodeTable directly (no /dev/fuse): a scratch directory, the
// errno an operation fails with, and a count of this process's descriptors that point into a directory.
#pragma once

#include <limits.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "veilfs/util/error.hpp"

namespace veil::fuse::testing {

// A fresh directory under the system temp dir, removed with everything in it. path() has no symlinks in it,
// so that it prefixes what /proc/self/fd/N points to.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "veilfs-fuse-test-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = std::filesystem::canonical(tmpl).string();
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// What /proc/self/fd/<fd> points to ("" when fd is not open).
inline std::string fd_target(int fd) {
  char buf[PATH_MAX + 64];
  std::string link = "/proc/self/fd/" + std::to_string(fd);
  ssize_t n = ::readlink(link.c_str(), buf, sizeof buf);
  return n < 0 ? std::string() : std::string(buf, static_cast<size_t>(n));
}

// This process's open descriptors (from /proc/self/fd) whose target is `dir` or lies under it. A target of an
// unlinked file ends in " (deleted)"; with only_deleted, just those count.
inline std::vector<int> fds_under(const std::string& dir, bool only_deleted = false) {
  std::vector<int> fds;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    int fd = std::atoi(e.path().filename().c_str());
    std::string t = fd_target(fd);
    if (t != dir && t.rfind(dir + "/", 0) != 0) continue;
    static const std::string kDeleted = " (deleted)";
    bool deleted = t.size() > kDeleted.size() && t.compare(t.size() - kDeleted.size(), kDeleted.size(), kDeleted) == 0;
    if (only_deleted && !deleted) continue;
    fds.push_back(fd);
  }
  return fds;
}
inline size_t count_fds_under(const std::string& dir, bool only_deleted = false) {
  return fds_under(dir, only_deleted).size();
}

// The errno that f's veil::Error carries; 0 when f does not throw, -1 for any other exception.
template <class F>
int errno_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.sys_errno();
  } catch (...) {
    return -1;
  }
  return 0;
}

}  // namespace veil::fuse::testing
