#include "veilfs/cli/cipher_dir.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <cstring>
#include <optional>

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

format::VolumeConfig load_config_at(int dirfd, const std::string& path, const std::string& config_file) {
  const bool external = !config_file.empty();
  const std::string conf = external ? config_file : path + "/" + std::string(format::kConfigName);
  const std::string conf_name = external ? config_file : std::string(format::kConfigName);
  try {
    if (!external) return layout::load_config(dirfd);
    layout::ConfigDir at = layout::open_config_dir(config_file);
    return layout::load_config(at.dir.get(), at.name);
  } catch (const Error& e) {
    switch (e.kind()) {
      case ErrorKind::NotFound: {
        if (external) throw Error(ErrorKind::NotFound, e.sys_errno(), config_file + ": the config file does not exist");
        struct stat st {};
        if (::fstatat(dirfd, std::string(format::kParamsName).c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0)
          throw Error(ErrorKind::NotFound, e.sys_errno(),
                      path + ": this volume's config is kept elsewhere (there is " + std::string(format::kParamsName) +
                          " but no " + std::string(format::kConfigName) +
                          "): give --config FILE, or use the recovery code (--recovery-code, veilkey recover)");
        throw Error(ErrorKind::NotFound, e.sys_errno(),
                    path + ": not a veilfs volume (there is no " + std::string(format::kConfigName) + ")");
      }
      case ErrorKind::Io: {
        std::string why = std::strerror(e.sys_errno());
        if (e.sys_errno() == ELOOP) why = "it is a symlink (refused)";
        throw Error(ErrorKind::Io, e.sys_errno(), conf + ": cannot read the config: " + why);
      }
      default: {
        // Messages that begin with the file's own name ("veilfs.conf is not a regular file") get the full path.
        std::string what = e.what();
        if (what.rfind(conf_name + " ", 0) == 0)
          throw Error(e.kind(), e.sys_errno(), conf + what.substr(conf_name.size()));
        rethrow_at(conf, e);
      }
    }
  }
}

format::VolumeConfig preflight_volume(const std::string& path, const std::string& config_file) {
  UniqueFd dir = open_cipher_dir(path);
  return load_config_at(dir.get(), path, config_file);
}

void preflight_recovery(const std::string& path, const std::string& config_file) {
  UniqueFd dir = open_cipher_dir(path);
  try {
    load_config_at(dir.get(), path, config_file);
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::NotFound) throw;
    std::optional<format::VolumeConfig> params;
    try {
      params = layout::load_params(dir.get());
    } catch (const Error& pe) {
      rethrow_at(path + "/" + std::string(format::kParamsName), pe);
    }
    if (!params)
      throw Error(ErrorKind::NotFound, ENOENT,
                  std::string(e.what()) + "; nor is there " + std::string(format::kParamsName) +
                      " (volumes made before veilfs kept one get it from the next veilkey command that saves the "
                      "config)");
  }
}

void rethrow_at(const std::string& where, const Error& e) {
  throw Error(e.kind(), e.sys_errno(), where + ": " + e.what());
}

}  // namespace veil::cli
