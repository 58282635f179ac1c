// Extended attributes: user.* only, names and values encrypted (XattrCodec); others are refused.
#include <sys/xattr.h>

#include "fuse/fs.hpp"
#include "fuse/log.hpp"
#include "fuse/nonroot.hpp"
#include "veilfs/util/error.hpp"

namespace veil::fuse {

std::string Fs::xattr_path(Inode& n, FdPtr& hold) {
  hold = table_.fd(n);
  return ProcPath(hold->get()).c_str();
}

void Fs::setxattr(uint64_t ino, const std::string& name, std::span<const uint8_t> value, int flags) {
  Inode& n = table_.get(ino);
  auto bname = vol_->xattrs().encrypt_name(name);
  if (!bname) throw_errno(EOPNOTSUPP);
  auto stored = vol_->xattrs().encrypt_value(*bname, value);
  FdPtr hold;
  std::string path = xattr_path(n, hold);
  check_errno(::setxattr(path.c_str(), bname->c_str(), stored.data(), stored.size(), flags));
}

std::vector<uint8_t> Fs::getxattr(uint64_t ino, const std::string& name) {
  Inode& n = table_.get(ino);
  auto bname = vol_->xattrs().encrypt_name(name);
  if (!bname) throw_errno(EOPNOTSUPP);
  FdPtr hold;
  std::string path = xattr_path(n, hold);
  std::vector<uint8_t> stored;
  for (;;) {
    ssize_t len = ::getxattr(path.c_str(), bname->c_str(), nullptr, 0);
    if (len < 0) throw_errno(errno);
    stored.resize(static_cast<size_t>(len));
    len = ::getxattr(path.c_str(), bname->c_str(), stored.data(), stored.size());
    if (len < 0 && errno == ERANGE) continue;  // grew in between
    if (len < 0) throw_errno(errno);
    stored.resize(static_cast<size_t>(len));
    break;
  }
  auto plain = vol_->xattrs().decrypt_value(*bname, stored);
  if (!plain) {
    log(LogLevel::Warning, "inode %llu: xattr %s fails authentication", static_cast<unsigned long long>(n.ino),
        bname->c_str());
    throw_errno(EIO);
  }
  return std::move(*plain);
}

std::vector<std::string> Fs::listxattr(uint64_t ino) {
  Inode& n = table_.get(ino);
  FdPtr hold;
  std::string path = xattr_path(n, hold);
  std::vector<char> buf;
  for (;;) {
    ssize_t len = ::listxattr(path.c_str(), nullptr, 0);
    if (len < 0) throw_errno(errno);
    buf.resize(static_cast<size_t>(len));
    len = ::listxattr(path.c_str(), buf.data(), buf.size());
    if (len < 0 && errno == ERANGE) continue;
    if (len < 0) throw_errno(errno);
    buf.resize(static_cast<size_t>(len));
    break;
  }
  std::vector<std::string> out;
  for (size_t i = 0; i < buf.size();) {
    std::string_view b(buf.data() + i);
    i += b.size() + 1;
    if (auto plain = vol_->xattrs().decrypt_name(b)) out.push_back(std::move(*plain));
  }
  return out;
}

void Fs::removexattr(uint64_t ino, const std::string& name) {
  Inode& n = table_.get(ino);
  auto bname = vol_->xattrs().encrypt_name(name);
  if (!bname) throw_errno(EOPNOTSUPP);
  FdPtr hold;
  std::string path = xattr_path(n, hold);
  check_errno(::removexattr(path.c_str(), bname->c_str()));
}

}  // namespace veil::fuse
