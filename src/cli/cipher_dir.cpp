#include "veilfs/cli/cipher_dir.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <cstring>

#include "veilfs/format/constants.hpp"
#include "veilfs/layout/cipher_dir.hpp"

namespace veil::cli {

UniqueFd open_cipher_dir(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd) return fd;
  const int err = errno;
  struct stat st {};
  if (err == ENOENT) {
    const bool dangling = ::lstat(path.c_str(), &st) == 0 && S_ISLNK(st.st_mode);
    throw Error(ErrorKind::NotFound, err,
                path + ": the cipher dir does not exist" + (dangling ? " (a symlink to a missing directory)" : ""));
  }
  if (err == ENOTDIR) {
    if (::stat(path.c_str(), &st) == 0)
      throw Error(ErrorKind::NotFound, err, path + ": the cipher dir is not a directory");
    throw Error(ErrorKind::NotFound, err,
                path + ": the cipher dir does not exist (a component of the path is not a directory)");
  }
  std::string why = std::strerror(err);
  if (err == ENOTCONN) why += " (a dead FUSE mount: run fusermount3 -u " + path + ")";
  throw Error(ErrorKind::Io, err, path + ": cannot open the cipher dir: " + why);
}

format::VolumeConfig load_config_at(int dirfd, const std::string& path) {
  const std::string conf = path + "/" + std::string(format::kConfigName);
  try {
    return layout::load_config(dirfd);
  } catch (const Error& e) {
    switch (e.kind()) {
      case ErrorKind::NotFound:
        throw Error(ErrorKind::NotFound, e.sys_errno(),
                    path + ": not a veilfs volume (there is no " + std::string(format::kConfigName) + ")");
      case ErrorKind::Io: {
        std::string why = std::strerror(e.sys_errno());
        if (e.sys_errno() == ELOOP) why = "it is a symlink (refused)";
        throw Error(ErrorKind::Io, e.sys_errno(), conf + ": cannot read the config: " + why);
      }
      default: {
        // Messages that begin with the file's own name ("veilfs.conf is not a regular file") get the full path.
        std::string what = e.what();
        if (what.rfind(std::string(format::kConfigName) + " ", 0) == 0)
          throw Error(e.kind(), e.sys_errno(), conf + what.substr(format::kConfigName.size()));
        rethrow_at(conf, e);
      }
    }
  }
}

format::VolumeConfig preflight_volume(const std::string& path) {
  UniqueFd dir = open_cipher_dir(path);
  return load_config_at(dir.get(), path);
}

void rethrow_at(const std::string& where, const Error& e) {
  throw Error(e.kind(), e.sys_errno(), where + ": " + e.what());
}

}  // namespace veil::cli
