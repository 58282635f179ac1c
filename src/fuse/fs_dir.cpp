// Directory listings: the backing directory's stream, decrypted one READDIR request at a time.
#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include "fuse/fs.hpp"
#include "fuse/log.hpp"
#include "veilfs/layout/cipher_dir.hpp"
#include "veilfs/util/error.hpp"

namespace veil::fuse {

DirHandle* Fs::opendir(uint64_t ino) {
  Inode& n = table_.get(ino);
  if (n.type != S_IFDIR) throw_errno(ENOTDIR);
  auto dh = std::make_unique<DirHandle>();
  dh->dir = n.shared_from_this();
  return track(std::move(dh));
}

DirHandle::~DirHandle() {
  if (stream) ::closedir(stream);
}

void Fs::readdir(DirHandle& dh, uint64_t off, const std::function<bool(const DirEntry&, uint64_t)>& emit) {
  Inode& d = *dh.dir;
  if (!dh.stream) {
    FdPtr f = table_.fd(d);
    UniqueFd listing = layout::open_dir_for_listing(f->get());
    dh.stream = ::fdopendir(listing.get());
    if (!dh.stream) throw_errno(errno);
    listing.release();  // the stream owns it now
    dh.pos = 0;
    dh.pending = nullptr;
  }
  if (off != dh.pos) {
    ::seekdir(dh.stream, static_cast<long>(off));
    dh.pos = off;
    dh.pending = nullptr;
  }
  const DirIv iv = iv_of(d);
  const NameTransform& names = vol_->names();
  DirEntry de;
  for (;;) {
    if (!dh.pending) {
      errno = 0;
      dh.pending = ::readdir(dh.stream);
      if (!dh.pending) {
        if (errno != 0) throw_errno(errno);
        return;
      }
    }
    const dirent* e = dh.pending;
    const auto next = static_cast<uint64_t>(e->d_off);
    std::string_view b = e->d_name;
    const bool dot = b == "." || b == "..";
    std::optional<std::string> plain;
    if (dot) {
      plain = std::string(b);
    } else if (layout::is_long_name(b)) {
      try {
        plain = names.decrypt(iv, layout::read_long_name(::dirfd(dh.stream), b));
      } catch (const Error&) {
      }
      if (!plain)
        log(LogLevel::Warning, "directory inode %llu: skipping long name %s without a valid name file",
            static_cast<unsigned long long>(d.ino), e->d_name);
    } else if (!layout::is_reserved(b)) {
      plain = names.decrypt(iv, b);
      if (!plain)
        log(LogLevel::Warning, "directory inode %llu: skipping undecryptable entry %s",
            static_cast<unsigned long long>(d.ino), e->d_name);
    }
    if (plain) {
      de.name = std::move(*plain);
      de.backing.assign(b);
      de.ino = e->d_ino;
      de.type = dot ? static_cast<unsigned char>(DT_DIR) : e->d_type;
      if (!emit(de, next)) return;  // stays pending for the next request
    }
    dh.pending = nullptr;
    dh.pos = next;
  }
}

void Fs::releasedir(DirHandle* dh) {
  {
    std::lock_guard lk(handles_mu_);
    open_dirs_.erase(dh);
  }
  delete dh;
}

void Fs::fsyncdir(uint64_t ino, bool datasync) {
  Inode& n = table_.get(ino);
  FdPtr f = table_.fd(n);
  UniqueFd d = layout::open_dir_for_listing(f->get());
  check_errno(datasync ? ::fdatasync(d.get()) : ::fsync(d.get()));
}

}  // namespace veil::fuse
