#include "veilfs/path_map.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include "veilfs/format/constants.hpp"
#include "veilfs/layout/conflicts.hpp"
#include "veilfs/util/error.hpp"

namespace veil {

namespace {

std::vector<std::string> split(const std::string& path) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    std::string c = path.substr(i, j - i);
    if (c == "..") throw Error(ErrorKind::InvalidArgument, EINVAL, "a path with \"..\" in it");
    if (!c.empty() && c != ".") out.push_back(std::move(c));
    i = j + 1;
  }
  return out;
}

std::string join(const std::string& dir, const std::string& name) { return dir == "/" ? "/" + name : dir + "/" + name; }

std::string join_cipher(const std::string& dir, const std::string& name) {
  return dir.empty() ? name : dir + "/" + name;
}

// One directory of the walk: its descriptor, IV and paths on both sides.
struct Where {
  UniqueFd fd;
  DirIv iv;
  std::string plain = "/";
  std::string cipher;  // "" for the root
};

Where root_of(const Volume& vol) {
  Where w;
  w.fd.reset(::openat(vol.root_fd(), ".", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!w.fd) throw_errno("open the cipher dir");
  w.iv = vol.root_iv();
  return w;
}

void must_exist(int dirfd, const std::string& backing, const std::string& cipher_path) {
  struct stat st;
  if (::fstatat(dirfd, backing.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    const int e = errno;
    throw Error(e == ENOENT ? ErrorKind::NotFound : ErrorKind::Io, e, cipher_path + ": " + std::strerror(e));
  }
}

}  // namespace

PlainPath plain_path_of(const Volume& vol, const std::string& cipher_path) {
  const auto parts = split(cipher_path);
  Where w = root_of(vol);
  const NameTransform& names = vol.names();
  for (size_t k = 0; k < parts.size(); ++k) {
    const std::string& c = parts[k];
    const bool last = k + 1 == parts.size();
    const std::string cpath = join_cipher(w.cipher, c);
    must_exist(w.fd.get(), c, cpath);
    auto own = [&](std::string of, std::string role) -> PlainPath {
      if (!last) throw Error(ErrorKind::NotFound, ENOTDIR, cpath + ": veilfs's own file, not a directory");
      return {std::move(of), std::move(role)};
    };
    const layout::Reserved r = layout::classify(c);
    switch (r) {
      case layout::Reserved::Config:
        return own(w.plain, w.cipher.empty() ? "the volume's config" : "a stray config (hidden by the mount)");
      case layout::Reserved::Params:
        return own(w.plain, w.cipher.empty() ? "the volume's parameters (the config without key slots)"
                                             : "a stray params file (hidden by the mount)");
      case layout::Reserved::DirIv:
        return own(w.plain, "its directory IV file");
      case layout::Reserved::Temp:
        return own(w.plain, "a temporary file of an interrupted replace, in this directory");
      case layout::Reserved::NameSidecar:
      case layout::Reserved::LinkSidecar: {
        const std::string owner = layout::sidecar_owner(c, r);
        const char* role = r == layout::Reserved::NameSidecar ? "its long-name sidecar" : "its long target's sidecar";
        PlainPath p = plain_path_of(vol, join_cipher(w.cipher, owner));
        return own(p.path, role);
      }
      default:
        break;
    }
    // An entry of the plain view (a long name through its sidecar; a sync conflict copy under its shown name).
    auto shown = layout::shown_name_of(w.fd.get(), c, [&](std::string_view e) { return names.decrypt(w.iv, e); });
    if (!shown)
      throw Error(ErrorKind::Corrupt, EIO,
                  cpath + (r == layout::Reserved::LongName ? ": its long-name sidecar is missing or damaged"
                                                           : ": not a name of this volume in this directory"));
    const std::string plain = join(w.plain, *shown);
    if (last) return {plain, ""};
    Where next;
    next.fd = layout::open_dir(w.fd.get(), c);
    next.iv = vol.dir_iv(next.fd.get(), &w.iv, layout::encoded_name_of(w.fd.get(), c));
    next.plain = plain;
    next.cipher = cpath;
    w = std::move(next);
  }
  return {w.plain, ""};
}

std::vector<std::string> cipher_paths_of(const Volume& vol, const std::string& plain_path) {
  const auto parts = split(plain_path);
  Where w = root_of(vol);
  const NameTransform& names = vol.names();
  if (parts.empty()) return {std::string(format::kConfigName), std::string(format::kDirIvName)};
  for (size_t k = 0; k < parts.size(); ++k) {
    const std::string encoded = names.encrypt(w.iv, parts[k]);
    const std::string backing = layout::backing_name(encoded);
    const std::string cpath = join_cipher(w.cipher, backing);
    if (k + 1 == parts.size()) {
      std::vector<std::string> out{cpath};
      struct stat st;
      if (::fstatat(w.fd.get(), backing.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return out;  // not made (yet)
      if (layout::is_long_name(backing)) out.push_back(join_cipher(w.cipher, layout::name_sidecar_of(backing)));
      if (S_ISLNK(st.st_mode) && layout::is_long_link_marker(layout::read_symlink(w.fd.get(), backing.c_str())))
        out.push_back(join_cipher(w.cipher, layout::link_sidecar_of(backing)));
      if (S_ISDIR(st.st_mode)) out.push_back(cpath + "/" + std::string(format::kDirIvName));
      return out;
    }
    must_exist(w.fd.get(), backing, cpath);
    Where next;
    next.fd = layout::open_dir(w.fd.get(), backing);
    next.iv = vol.dir_iv(next.fd.get(), &w.iv, encoded);
    next.cipher = cpath;
    w = std::move(next);
  }
  return {};
}

}  // namespace veil
