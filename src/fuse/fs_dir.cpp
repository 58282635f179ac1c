// Directory listings: the backing directory's stream, decrypted one READDIR request at a time.
#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include "fuse/fs.hpp"
#include "fuse/log.hpp"
#include "veilfs/layout/cipher_dir.hpp"
#include "veilfs/layout/conflicts.hpp"
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
  DirIv iv = iv_of(d);
  bool iv_reread = false;  // once per request: a name that does not decode may be under a newer IV file
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
    } else {
      bool undecodable = false;
      plain = shown_name(::dirfd(dh.stream), iv, b, d, &undecodable);
      if (undecodable && !iv_reread) {
        iv_reread = true;
        if (auto fresh = reread_iv(d, iv)) {
          iv = *fresh;
          plain = shown_name(::dirfd(dh.stream), iv, b, d, &undecodable);
        }
      }
      if (!plain && undecodable && !layout::is_sync_service_file(b)) {
        if (shown_as_bad_name(b) && b.size() + kBadNameSuffix.size() <= format::kMaxPlainNameSize)
          plain = std::string(b) + std::string(kBadNameSuffix);  // --badname: shown so it can be rescued
        else
          log(LogLevel::Warning, "directory inode %llu: skipping undecryptable entry %s",
              static_cast<unsigned long long>(d.ino), e->d_name);
      }
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

std::optional<std::string> Fs::shown_name(int dirfd, const DirIv& iv, std::string_view b, Inode& dir,
                                          bool* undecodable) {
  auto plain = layout::shown_name_of(
      dirfd, b, [&](std::string_view encoded) { return vol_->names().decrypt(iv, encoded); }, undecodable);
  if (!plain && !*undecodable) {
    if (auto copy = layout::parse_conflict_backing(b))
      log(LogLevel::Warning,
          "directory inode %llu: %s is a sync conflict copy of veilfs's own %s (veilfs fsck reports it)",
          static_cast<unsigned long long>(dir.ino), std::string(b).c_str(), copy->original.c_str());
  }
  return plain;
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
