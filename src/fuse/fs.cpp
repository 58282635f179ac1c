// Fs itself: construction, names and directory IVs, attributes. The operations live beside it by concern:
// fs_entries.cpp (making, removing, renaming entries), fs_content.cpp (file contents), fs_dir.cpp (listing),
// fs_xattr.cpp (extended attributes).
#include "fuse/fs.hpp"

#include <fcntl.h>
#include <fnmatch.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>

#include "fuse/log.hpp"
#include "fuse/nonroot.hpp"
#include "veilfs/layout/cipher_dir.hpp"
#include "veilfs/layout/conflicts.hpp"
#include "veilfs/util/error.hpp"
#include "veilfs/util/io.hpp"

namespace veil::fuse {

namespace {

// 1/divisor of the open-file limit, within [lo, hi] (hi when there is no limit).
size_t share_of_fd_limit(size_t divisor, size_t lo, size_t hi) {
  struct rlimit rl {};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return hi;
  return std::clamp<size_t>(rl.rlim_cur / divisor, lo, hi);
}

// Cached O_PATH descriptors: a quarter of the limit leaves room for content engines, directory listings and
// libfuse itself.
size_t fd_cap() { return share_of_fd_limit(4, 64, 4000); }

// Cached content engines: an eighth (each holds a descriptor and a key in locked memory).
size_t engine_cap() { return share_of_fd_limit(8, 16, 1024); }

UniqueFd open_root(const Volume& v, struct stat* st) {
  UniqueFd fd(::openat(v.root_fd(), ".", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!fd) throw_errno("open cipher dir");
  if (::fstat(fd.get(), st) != 0) throw_errno("stat cipher dir");
  return fd;
}

}  // namespace

Fs::Fs(std::unique_ptr<Volume> volume, FsLimits limits, FsOptions options)
    : vol_(std::move(volume)),
      table_(
          [&] {
            struct stat st;
            return open_root(*vol_, &st);
          }(),
          [&] {
            struct stat st;
            if (::fstat(vol_->root_fd(), &st) != 0) throw_errno("stat cipher dir");
            return st;
          }(),
          limits.descriptors ? limits.descriptors : fd_cap()),
      shared_(options.shared_storage),
      badname_(std::move(options.badname)),
      access_{.as_root = ::geteuid() == 0},
      engines_(limits.engines ? limits.engines : engine_cap()) {
  table_.root().iv = vol_->root_iv();
}

Fs::~Fs() {
  std::lock_guard lk(handles_mu_);
  for (DirHandle* dh : open_dirs_) delete dh;
}

DirHandle* Fs::track(std::unique_ptr<DirHandle> dh) {
  std::lock_guard lk(handles_mu_);
  open_dirs_.insert(dh.get());
  return dh.release();
}

// ---------------------------------------------------------------------------------------------------------
// Names, directory IVs, attributes

DirIv Fs::iv_of(Inode& d) {
  {
    std::lock_guard lk(d.mu);
    if (d.iv) return *d.iv;
  }
  if (d.type != S_IFDIR) throw_errno(ENOTDIR);
  FdPtr f = table_.fd(d);
  auto [parent, name] = table_.location(d);
  DirIv iv{};
  bool torn = false;
  std::optional<DirIv> stored = layout::read_dir_iv_if_intact(f->get(), &torn);
  // An IV file torn by a crash right after mkdir: the derived IV is what it held.
  if (torn)
    log(LogLevel::Warning, "directory inode %llu: IV file has the wrong size, using the derived IV",
        static_cast<unsigned long long>(d.ino));
  if (stored) {
    iv = *stored;
  } else {
    if (!parent) return vol_->root_iv();
    DirIv piv = iv_of(*parent);
    FdPtr pf = table_.fd(*parent);
    iv = vol_->names().derive_child_iv(piv, layout::encoded_name_of(pf->get(), name));
    // Written down (atomically, fsynced) before anything is named with it: a derived IV depends on the
    // directory's name, which may change, and another writer of the cipher dir must find the same IV.
    try {
      layout::write_dir_iv(f->get(), iv);
    } catch (const Error& e) {
      log(LogLevel::Warning, "directory inode %llu: could not write its missing IV file (%s)",
          static_cast<unsigned long long>(d.ino), e.what());
    }
  }
  std::lock_guard lk(d.mu);
  d.iv = iv;
  return iv;
}

std::optional<DirIv> Fs::reread_iv(Inode& d, const DirIv& cached) {
  FdPtr f = table_.fd(d);
  std::optional<DirIv> now = layout::read_dir_iv_if_intact(f->get());
  if (!now || *now == cached) return std::nullopt;
  log(LogLevel::Info, "directory inode %llu: its IV file changed on disk, using the new one",
      static_cast<unsigned long long>(d.ino));
  std::lock_guard lk(d.mu);
  d.iv = *now;
  return now;
}

bool Fs::retarget_to_conflict_copy(Named& at, const std::string& name) {
  auto split = layout::split_conflict_name(name);
  if (!split) return false;
  std::string encoded = vol_->names().encrypt(at.iv, split->first);
  for (std::string& b : layout::conflict_backing_candidates(layout::backing_name(encoded), split->second)) {
    struct stat st;
    if (::fstatat(at.dirfd->get(), b.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    at.encoded = std::move(encoded);
    at.backing = std::move(b);
    return true;
  }
  // A shown name that had to be shortened to the maximum cannot be turned back into its original: find the copy
  // it stands for by listing (only for names of exactly that length, so a scan is rare).
  if (name.size() != format::kMaxPlainNameSize) return false;
  bool found = false;
  for_each_dir_entry(at.dirfd->get(), [&](std::string_view b) {
    if (!layout::parse_conflict_backing(b)) return true;
    bool undecodable = false;
    auto shown = shown_name(at.dirfd->get(), at.iv, b, *at.dir, &undecodable);
    found = shown && *shown == name;
    if (found) at.backing.assign(b);
    return !found;
  });
  return found;
}

bool Fs::shown_as_bad_name(std::string_view backing) const {
  const std::string b(backing);
  for (const auto& glob : badname_)
    if (::fnmatch(glob.c_str(), b.c_str(), FNM_PERIOD) == 0) return true;
  return false;
}

bool Fs::retarget_to_bad_name(Named& at, const std::string& name) {
  if (badname_.empty() || !name.ends_with(kBadNameSuffix)) return false;
  std::string b = name.substr(0, name.size() - kBadNameSuffix.size());
  if (!shown_as_bad_name(b)) return false;
  bool undecodable = false;
  if (shown_name(at.dirfd->get(), at.iv, b, *at.dir, &undecodable) || !undecodable) return false;
  struct stat st;
  if (::fstatat(at.dirfd->get(), b.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return false;
  at.backing = std::move(b);
  return true;
}

void Fs::stat_existing(Named& at, const std::string& name, struct stat& st) {
  if (::fstatat(at.dirfd->get(), at.backing.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) return;
  if (errno != ENOENT) throw_errno(errno);
  if (!retarget_to_conflict_copy(at, name) && !retarget_to_bad_name(at, name)) throw_errno(ENOENT);
  check_errno(::fstatat(at.dirfd->get(), at.backing.c_str(), &st, AT_SYMLINK_NOFOLLOW));
}

Fs::Named Fs::resolve(uint64_t parent, const std::string& name) {
  Named r;
  r.dir = table_.get(parent).shared_from_this();
  r.iv = iv_of(*r.dir);
  r.encoded = vol_->names().encrypt(r.iv, name);
  r.backing = layout::backing_name(r.encoded);
  r.dirfd = table_.fd(*r.dir);
  return r;
}

std::string Fs::stored_link(Inode& n) {
  FdPtr f = table_.fd(n);
  std::string held = layout::read_symlink(f->get(), "");
  if (!layout::is_long_link_marker(held)) return held;
  auto [parent, name] = table_.location(n);
  if (!parent) throw_errno(EIO);
  FdPtr pf = table_.fd(*parent);
  return layout::link_target_from(std::move(held), pf->get(), name);
}

void Fs::plain_attr(Inode& n, struct stat& st) {
  if (S_ISREG(st.st_mode)) {
    st.st_size = static_cast<off_t>(vol_->content()->layout().plain_size(static_cast<uint64_t>(st.st_size)));
  } else if (S_ISLNK(st.st_mode)) {
    {
      std::lock_guard lk(n.mu);
      if (n.link_size) {
        st.st_size = static_cast<off_t>(*n.link_size);
        return;
      }
    }
    auto plain = vol_->links().decrypt(stored_link(n));
    if (!plain) {
      log(LogLevel::Warning, "symlink inode %llu: target fails authentication", static_cast<unsigned long long>(n.ino));
      throw_errno(EIO);
    }
    std::lock_guard lk(n.mu);
    n.link_size = plain->size();
    st.st_size = static_cast<off_t>(plain->size());
  }
}

bool Fs::stat_at_location(Inode& n, struct stat& st) {
  if (table_.cached_fd(n)) return false;
  auto [parent, name] = table_.location(n);
  if (!parent) return false;
  FdPtr pf = table_.fd(*parent);
  return ::fstatat(pf->get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_dev == n.dev && st.st_ino == n.ino;
}

struct stat Fs::stat_of(Inode& n) {
  struct stat st;
  if (stat_at_location(n, st)) {
    plain_attr(n, st);
    return st;
  }
  FdPtr f;
  try {
    f = table_.fd(n);
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::NotFound) throw;
    // Unlinked but still open: the content engine's descriptor is all that is left.
    std::shared_ptr<ContentFile> cf = engines_.cached(n.engine);
    if (!cf) throw_errno(ENOENT);
    check_errno(::fstat(cf->fd(), &st));
    plain_attr(n, st);
    return st;
  }
  check_errno(::fstatat(f->get(), "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW));
  plain_attr(n, st);
  return st;
}

uint64_t Fs::birth_of(Inode& dir, const std::string& backing) {
  if (!shared_) return 0;
  FdPtr f = table_.fd(dir);
  struct statx sx {};
  if (::statx(f->get(), backing.c_str(), AT_SYMLINK_NOFOLLOW | AT_STATX_DONT_SYNC, STATX_BTIME, &sx) != 0 ||
      !(sx.stx_mask & STATX_BTIME))
    return 0;  // no birth times here (sshfs, tmpfs before 5.x): the type check is all there is
  return static_cast<uint64_t>(sx.stx_btime.tv_sec) * 1000000000u + sx.stx_btime.tv_nsec;
}

Entry Fs::entry_for(Inode& dir, const std::string& backing, struct stat st, bool fresh) {
  auto n = table_.intern(dir, backing, st, {}, fresh, birth_of(dir, backing));
  try {
    plain_attr(*n, st);
  } catch (...) {
    table_.forget(*n, 1);
    throw;
  }
  return {table_.fuse_ino(*n), st};
}

Entry Fs::lookup(uint64_t parent, const std::string& name) {
  Named at = resolve(parent, name);
  struct stat st;
  try {
    stat_existing(at, name, st);
  } catch (const Error& e) {
    if (e.sys_errno() == ENOENT) return {};
    throw;
  }
  return entry_for(*at.dir, at.backing, st);
}

Entry Fs::lookup_backing(Inode& dir, const std::string& backing, bool fresh) {
  FdPtr f = table_.fd(dir);
  struct stat st;
  check_errno(::fstatat(f->get(), backing.c_str(), &st, AT_SYMLINK_NOFOLLOW));
  return entry_for(dir, backing, st, fresh);
}

void Fs::forget(uint64_t ino, uint64_t count) {
  Inode& n = table_.get(ino);
  auto keep = n.shared_from_this();  // the table may drop its last reference
  if (n.type == S_IFREG) settle_before_forget(n);
  // No file of the inode is open any more: its engine can go.
  if (table_.forget(n, count) && n.type == S_IFREG) engines_.drop(n.engine);
}

void Fs::settle_before_forget(Inode& n) {
  // Writes not yet on disk must not be forgotten: a later inode of the file would take them as durable
  // (DurableShape). The kernel forgets an inode long after its writes were sent, so this is usually an
  // fdatasync with nothing left to write. Done before the table forgets the inode, whose descriptor it uses.
  {
    std::lock_guard lk(n.durable->mu);
    if (!n.durable->dirty) return;
  }
  try {
    auto cf = engines_.cached(n.engine);
    FdPtr path = table_.cached_fd(n);
    struct stat st;
    const int probe = cf ? cf->fd() : path ? path->get() : -1;
    if (probe >= 0 && ::fstat(probe, &st) == 0 && st.st_nlink == 0) {
      // Unlinked: nothing of it can come back, and its space is freed the sooner for not syncing it.
      std::lock_guard lk(n.durable->mu);
      n.durable->dirty = false;
      return;
    }
    if (cf) {
      cf->settle(/*unsynced_too=*/true);
      return;
    }
    // No engine: it settled its loose blocks when it went; the data still needs its barrier.
    UniqueFd fd = reopen(n, O_RDONLY);
    if (::fdatasync(fd.get()) != 0) throw_errno("fdatasync");
    std::lock_guard lk(n.durable->mu);
    n.durable->dirty = false;
  } catch (const Error& e) {
    log(LogLevel::Warning, "inode %llu: could not put its last writes on disk: %s",
        static_cast<unsigned long long>(n.ino), e.what());
  }
}

struct stat Fs::getattr(uint64_t ino) {
  return stat_of(table_.get(ino));
}

void Fs::access(uint64_t ino, int mask) {
  Inode& n = table_.get(ino);
  FdPtr f = table_.fd(n);
  if (mask == F_OK) return;
  check_errno(::faccessat(AT_FDCWD, ProcPath(f->get()).c_str(), mask, 0));
}

std::string Fs::readlink(uint64_t ino) {
  Inode& n = table_.get(ino);
  auto plain = vol_->links().decrypt(stored_link(n));
  if (!plain) {
    log(LogLevel::Warning, "symlink inode %llu: target fails authentication", static_cast<unsigned long long>(n.ino));
    throw_errno(EIO);
  }
  return *plain;
}

struct stat Fs::setattr(uint64_t ino, const SetAttr& a) {
  try {
    return setattr_impl(ino, a);
  } catch (const Error& e) {
    bool times_only = !a.mode && !a.uid && !a.gid && !a.size;
    if (e.sys_errno() != ENOENT || !times_only) throw;
    // The writeback cache flushes the times of a file it has just seen unlinked; the file is gone, and
    // failing here would make syncfs(2) report an error for the whole filesystem.
    Inode& n = table_.get(ino);
    struct stat st {};
    st.st_ino = n.ino;
    st.st_dev = n.dev;
    st.st_mode = n.type;
    struct timespec now;
    ::clock_gettime(CLOCK_REALTIME, &now);
    auto pick = [&](const std::optional<struct timespec>& t) {
      return !t || t->tv_nsec == UTIME_NOW || t->tv_nsec == UTIME_OMIT ? now : *t;
    };
    st.st_atim = pick(a.atime);
    st.st_mtim = pick(a.mtime);
    st.st_ctim = now;
    return st;
  }
}

struct stat Fs::setattr_impl(uint64_t ino, const SetAttr& a) {
  Inode& n = table_.get(ino);
  FdPtr f;
  auto path_fd = [&]() -> int {
    if (!f) f = table_.fd(n);
    return f->get();
  };
  std::shared_ptr<ContentFile> cached;  // an engine's descriptor saves the /proc path walk
  if (n.type == S_IFREG) cached = engines_.cached(n.engine);
  int openfd = cached ? cached->fd() : -1;
  if (a.mode) {
    mode_t mode = *a.mode & 07777;
    if (a.caller_uid != 0) {
      // A mode change asked by someone who neither owns the file nor is root cannot be a chmod (the kernel
      // refuses those itself: default_permissions): it is the kernel clearing set-ID bits after a write,
      // truncate or fallocate by that caller. Its FUSE fallback clears setgid only on group-executable files;
      // a local disk also clears it when the caller is not in the file's group (xfstests generic/683).
      struct stat now;
      check_errno(openfd >= 0 ? ::fstat(openfd, &now) : ::fstatat(path_fd(), "", &now, AT_EMPTY_PATH));
      const bool in_group =
          std::find(a.caller_groups.begin(), a.caller_groups.end(), now.st_gid) != a.caller_groups.end();
      if (a.caller_uid != now.st_uid && !in_group) mode &= ~static_cast<mode_t>(S_ISGID);
    }
    if (openfd >= 0)
      check_errno(::fchmod(openfd, mode));
    else
      check_errno(::chmod(ProcPath(path_fd()).c_str(), mode));
  }
  if (a.uid || a.gid) {
    uid_t u = a.uid ? *a.uid : static_cast<uid_t>(-1);
    gid_t g = a.gid ? *a.gid : static_cast<gid_t>(-1);
    if (openfd >= 0)
      check_errno(::fchown(openfd, u, g));
    else if (::fchownat(path_fd(), "", u, g, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0 &&
             !(n.type == S_IFLNK && errno == ENOENT))  // sshfs: see Fs::own
      throw_errno(errno);
  }
  if (a.size) truncate(n, *a.size);
  if (a.atime || a.mtime) {
    struct timespec tv[2];
    tv[0] = a.atime ? *a.atime : timespec{0, UTIME_OMIT};
    tv[1] = a.mtime ? *a.mtime : timespec{0, UTIME_OMIT};
    if (cached) {
      cached->set_times(tv);  // ordered with its tightening, which keeps the times it finds
    } else if (n.type == S_IFLNK) {
      // A symlink's own times: through its parent, never following it.
      auto [parent, name] = table_.location(n);
      if (!parent) throw_errno(ENOENT);
      FdPtr pf = table_.fd(*parent);
      check_errno(::utimensat(pf->get(), name.c_str(), tv, AT_SYMLINK_NOFOLLOW));
    } else {
      check_errno(::utimensat(AT_FDCWD, ProcPath(path_fd()).c_str(), tv, 0));
    }
  }
  if (cached) {
    struct stat st;
    check_errno(::fstat(openfd, &st));
    plain_attr(n, st);
    return st;
  }
  return getattr(ino);
}

struct statvfs Fs::statfs() {
  struct statvfs s;
  check_errno(::fstatvfs(vol_->root_fd(), &s));
  s.f_namemax = format::kMaxPlainNameSize;
  return s;
}

}  // namespace veil::fuse
