#include "fuse/fs.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/resource.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "fuse/log.hpp"
#include "veilfs/layout/cipher_dir.hpp"
#include "veilfs/util/error.hpp"
#include "veilfs/util/io.hpp"

namespace veil::fuse {
namespace {

struct ProcPath {
  char buf[40];
  explicit ProcPath(int fd) { std::snprintf(buf, sizeof buf, "/proc/self/fd/%d", fd); }
  const char* c_str() const { return buf; }
};

constexpr uint64_t kFallocChunk = 1 << 20;

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

// An undo step that failed leaves a side file or an IV-less directory behind: fsck finds and repairs both.
void log_undo_failure(const std::string& backing) {
  log(LogLevel::Error, "could not undo a half-made entry %s; run veilfs fsck", backing.c_str());
}

}  // namespace

Fs::Fs(std::unique_ptr<Volume> volume, FsLimits limits)
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
      access_{.as_root = ::geteuid() == 0},
      engine_cap_(limits.engines ? limits.engines : engine_cap()) {
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
  }
  std::lock_guard lk(d.mu);
  d.iv = iv;
  return iv;
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

UniqueFd Fs::open_object(Inode& n, int flags) {
  if (!table_.cached_fd(n)) {
    auto [parent, name] = table_.location(n);
    if (parent) {
      FdPtr pf = table_.fd(*parent);
      UniqueFd fd(::openat(pf->get(), name.c_str(), flags | O_CLOEXEC | O_NOFOLLOW));
      struct stat st;
      if (fd && ::fstat(fd.get(), &st) == 0 && st.st_dev == n.dev && st.st_ino == n.ino) return fd;
      if (!fd && errno != ENOENT) throw_errno(errno);
    }
  }
  return reopen(n, flags);
}

UniqueFd Fs::open_for_writing(Inode& n) {
  try {
    return open_object(n, O_RDWR);
  } catch (const Error& e) {
    if (access_.as_root || e.sys_errno() != EACCES) throw;
  }
  // A non-root daemon must also read a file its owner may only write (mode 0200): partial-block writes read
  // first. Like a local disk, let the owner in: add owner read/write for the open, then restore the mode.
  FdPtr path = table_.fd(n);
  struct stat st;
  check_errno(::fstat(path->get(), &st));
  if (st.st_uid != ::geteuid() || (st.st_mode & (S_IRUSR | S_IWUSR)) == (S_IRUSR | S_IWUSR)) throw_errno(EACCES);
  const ProcPath proc(path->get());
  check_errno(::chmod(proc.c_str(), (st.st_mode & 07777) | S_IRUSR | S_IWUSR));
  UniqueFd fd;
  int err = 0;
  try {
    fd = open_object(n, O_RDWR);
  } catch (const Error& e) {
    err = e.sys_errno() ? e.sys_errno() : EIO;
  }
  if (::chmod(proc.c_str(), st.st_mode & 07777) != 0 && !err) err = errno;
  if (err) throw_errno(err);
  return fd;
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
    std::shared_ptr<ContentFile> cf;
    {
      std::lock_guard lk(n.mu);
      cf = n.content;
    }
    if (!cf) throw_errno(ENOENT);
    check_errno(::fstat(cf->fd(), &st));
    plain_attr(n, st);
    return st;
  }
  check_errno(::fstatat(f->get(), "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW));
  plain_attr(n, st);
  return st;
}

Entry Fs::entry_for(Inode& dir, const std::string& backing, struct stat st, bool fresh) {
  auto n = table_.intern(dir, backing, st, {}, fresh);
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
  if (::fstatat(at.dirfd->get(), at.backing.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return {};
    throw_errno(errno);
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
  // No file of the inode is open any more: its engine can go.
  if (table_.forget(n, count) && n.type == S_IFREG) drop_engine(n);
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

// ---------------------------------------------------------------------------------------------------------
// Creating entries

void Fs::own(const Named& at, const Caller& c, mode_t mode, bool is_dir) {
  // The daemon's own user and group created it already (a set-group-ID directory's group stays either way).
  if (!access_.as_root || (c.uid == ::geteuid() && c.gid == ::getegid())) return;
  gid_t gid = c.gid;
  struct stat pst;
  // In a set-group-ID directory the new entry already has the directory's group, as on a local disk.
  if (::fstat(at.dirfd->get(), &pst) == 0 && (pst.st_mode & S_ISGID)) gid = static_cast<gid_t>(-1);
  check_errno(::fchownat(at.dirfd->get(), at.backing.c_str(), c.uid, gid, AT_SYMLINK_NOFOLLOW));
  // chown clears set-ID bits of non-directories even for root; the caller asked for them.
  if (!is_dir && (mode & (S_ISUID | S_ISGID)) && !S_ISLNK(mode))
    check_errno(::fchmodat(at.dirfd->get(), at.backing.c_str(), mode & 07777, 0));
}

Entry Fs::mknod(const Caller& c, uint64_t parent, const std::string& name, mode_t mode, dev_t rdev) {
  Named at = resolve(parent, name);
  const int dfd = at.dirfd->get();
  layout::EntryUndo undo(log_undo_failure);
  layout::add_name_sidecar(undo, dfd, at.backing, at.encoded, /*must_be_new=*/true);
  check_errno(::mknodat(dfd, at.backing.c_str(), mode, rdev));
  undo.created_file(dfd, at.backing);
  own(at, c, mode, false);
  Entry e = lookup_backing(*at.dir, at.backing, /*fresh=*/true);
  undo.dismiss();
  return e;
}

Entry Fs::mkdir(const Caller& c, uint64_t parent, const std::string& name, mode_t mode) {
  Named at = resolve(parent, name);
  const int dfd = at.dirfd->get();
  layout::EntryUndo undo(log_undo_failure);
  layout::add_name_sidecar(undo, dfd, at.backing, at.encoded, /*must_be_new=*/true);
  // Created with owner rwx so the IV file can go in; the exact mode is set afterwards.
  check_errno(::mkdirat(dfd, at.backing.c_str(), (mode & 07777) | S_IRWXU));
  undo.created_dir(dfd, at.backing);
  DirIv iv = vol_->names().derive_child_iv(at.iv, at.encoded);
  layout::add_dir_iv(undo, dfd, at.backing, iv);
  struct stat st;
  check_errno(::fstatat(dfd, at.backing.c_str(), &st, AT_SYMLINK_NOFOLLOW));
  mode_t want = (mode & 07777) | (st.st_mode & S_ISGID);
  if ((st.st_mode & 07777) != want) check_errno(::fchmodat(dfd, at.backing.c_str(), want, 0));
  own(at, c, mode, true);
  Entry e = lookup_backing(*at.dir, at.backing, /*fresh=*/true);
  undo.dismiss();
  Inode& n = table_.get(e.ino);
  std::lock_guard lk(n.mu);
  n.iv = iv;
  return e;
}

Entry Fs::symlink(const Caller& c, const std::string& target, uint64_t parent, const std::string& name) {
  Named at = resolve(parent, name);
  const int dfd = at.dirfd->get();
  layout::EntryUndo undo(log_undo_failure);
  layout::add_name_sidecar(undo, dfd, at.backing, at.encoded, /*must_be_new=*/true);
  const std::string held = layout::add_link_target(undo, dfd, at.backing, vol_->links().encrypt(target));
  check_errno(::symlinkat(held.c_str(), dfd, at.backing.c_str()));
  undo.created_file(dfd, at.backing);
  own(at, c, S_IFLNK, false);
  Entry e = lookup_backing(*at.dir, at.backing, /*fresh=*/true);
  undo.dismiss();
  return e;
}

Entry Fs::link(uint64_t ino, uint64_t newparent, const std::string& newname) {
  Inode& n = table_.get(ino);
  Named at = resolve(newparent, newname);
  const int dfd = at.dirfd->get();
  FdPtr src = table_.fd(n);
  layout::EntryUndo undo(log_undo_failure);
  layout::add_name_sidecar(undo, dfd, at.backing, at.encoded, /*must_be_new=*/true);
  // A long target lives beside each name of the symlink (what the new link holds, the marker, is linked along).
  if (n.type == S_IFLNK) layout::add_link_target(undo, dfd, at.backing, stored_link(n));
  check_errno(::linkat(AT_FDCWD, ProcPath(src->get()).c_str(), dfd, at.backing.c_str(), AT_SYMLINK_FOLLOW));
  undo.created_file(dfd, at.backing);
  Entry e = lookup_backing(*at.dir, at.backing);
  undo.dismiss();
  return e;
}

// ---------------------------------------------------------------------------------------------------------
// Removing and renaming

void Fs::unlink(uint64_t parent, const std::string& name) {
  Named at = resolve(parent, name);
  struct stat st;
  check_errno(::fstatat(at.dirfd->get(), at.backing.c_str(), &st, AT_SYMLINK_NOFOLLOW));
  if (S_ISDIR(st.st_mode)) throw_errno(EISDIR);
  // The kernel still knows it: it may reach it through another hard link or a file it has open (it tells us
  // of no opens), so keep a way in. The pinned descriptor also keeps its inode number from being reused, so the
  // Inode never needs unindexing here.
  if (auto n = table_.find(st.st_dev, st.st_ino)) table_.pin(*n);
  check_errno(::unlinkat(at.dirfd->get(), at.backing.c_str(), 0));
  layout::remove_side_files(at.dirfd->get(), at.backing, S_ISLNK(st.st_mode));
}

void Fs::rmdir(uint64_t parent, const std::string& name) {
  Named at = resolve(parent, name);
  struct stat st;
  check_errno(::fstatat(at.dirfd->get(), at.backing.c_str(), &st, AT_SYMLINK_NOFOLLOW));
  if (!S_ISDIR(st.st_mode)) throw_errno(ENOTDIR);
  // The IV file goes first (the backing rmdir would see it); it comes back if the directory was not empty.
  layout::EntryUndo undo(log_undo_failure);
  if (auto stored = layout::strip_dir_iv(at.dirfd->get(), at.backing, access_))
    undo.stripped_dir_iv(at.dirfd->get(), at.backing, *stored, access_);
  check_errno(::unlinkat(at.dirfd->get(), at.backing.c_str(), AT_REMOVEDIR));
  undo.dismiss();
  if (auto n = table_.find(st.st_dev, st.st_ino)) table_.unindex(*n);
  layout::remove_side_files(at.dirfd->get(), at.backing, /*symlink=*/false);
}

void Fs::rename(uint64_t parent, const std::string& name, uint64_t newparent, const std::string& newname,
                unsigned flags) {
  if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) throw_errno(EINVAL);
  Named from = resolve(parent, name);
  Named to = resolve(newparent, newname);
  int fd1 = from.dirfd->get(), fd2 = to.dirfd->get();
  struct stat s1, s2;
  check_errno(::fstatat(fd1, from.backing.c_str(), &s1, AT_SYMLINK_NOFOLLOW));
  bool dst = ::fstatat(fd2, to.backing.c_str(), &s2, AT_SYMLINK_NOFOLLOW) == 0;
  if (!dst && errno != ENOENT) throw_errno(errno);
  bool exchange = flags & RENAME_EXCHANGE;
  if (exchange && !dst) throw_errno(ENOENT);
  if (dst && (flags & RENAME_NOREPLACE)) throw_errno(EEXIST);
  // Same object under both names (or the same name): POSIX says do nothing.
  if (dst && s1.st_ino == s2.st_ino && s1.st_dev == s2.st_dev) return;

  auto n1 = table_.find(s1.st_dev, s1.st_ino);
  auto n2 = dst ? table_.find(s2.st_dev, s2.st_ino) : nullptr;
  // A derived IV depends on the directory's name: it must be on disk before the name changes.
  auto persist_iv = [&](int fd, const Named& at, Inode* n) {
    layout::persist_dir_iv(
        fd, at.backing, [&] { return n ? iv_of(*n) : vol_->names().derive_child_iv(at.iv, at.encoded); }, access_);
  };
  if (S_ISDIR(s1.st_mode)) persist_iv(fd1, from, n1.get());
  if (exchange && S_ISDIR(s2.st_mode)) persist_iv(fd2, to, n2.get());
  auto long_target = [](int fd, const std::string& backing) {
    return layout::link_target_is_long(layout::read_link_target(fd, backing));
  };
  bool s_long = S_ISLNK(s1.st_mode) && long_target(fd1, from.backing);
  bool d_long = dst && S_ISLNK(s2.st_mode) && long_target(fd2, to.backing);

  layout::EntryUndo undo(log_undo_failure);
  bool replaced_gone = false;  // the rename frees the target's backing inode
  if (dst && !exchange) {
    if (S_ISDIR(s2.st_mode)) {
      if (!S_ISDIR(s1.st_mode)) throw_errno(EISDIR);
      // An empty target directory holds only its IV file.
      if (auto stripped = layout::strip_dir_iv(fd2, to.backing, access_))
        undo.stripped_dir_iv(fd2, to.backing, *stripped, access_);
    } else if (S_ISDIR(s1.st_mode)) {
      throw_errno(ENOTDIR);
    }
    if (n2) {
      // As in unlink: a file the kernel knows may be open (or linked elsewhere); keep a way in.
      if (!S_ISDIR(s2.st_mode)) table_.pin(*n2);
      replaced_gone = S_ISDIR(s2.st_mode);
    }
  }
  layout::add_name_sidecar(undo, fd2, to.backing, to.encoded, /*must_be_new=*/false);
  check_errno(::renameat2(fd1, from.backing.c_str(), fd2, to.backing.c_str(), flags));
  undo.dismiss();
  if (!exchange) layout::remove_name_sidecar(fd1, from.backing);

  // Long symlink targets live next to their entry: move them with it.
  if (exchange)
    layout::exchange_link_sidecars(fd1, from.backing, s_long, fd2, to.backing, d_long);
  else if (s_long)
    layout::move_link_sidecar(fd1, from.backing, fd2, to.backing);
  else if (d_long)
    layout::remove_link_sidecar(fd2, to.backing);

  if (n1) table_.set_location(*n1, *to.dir, to.backing);
  if (n2 && exchange) table_.set_location(*n2, *from.dir, from.backing);
  if (n2 && replaced_gone) table_.unindex(*n2);
}

// ---------------------------------------------------------------------------------------------------------
// File contents

UniqueFd Fs::reopen(Inode& n, int flags) {
  FdPtr f = table_.fd(n);
  UniqueFd fd(::open(ProcPath(f->get()).c_str(), flags | O_CLOEXEC));
  if (!fd) throw_errno(errno);
  return fd;
}

void Fs::attach_content(Inode& n, UniqueFd fd, bool writable) {
  // Caller holds n.mu.
  n.content = std::make_shared<ContentFile>(vol_->content(), std::move(fd), "inode " + std::to_string(n.ino));
  n.content_writable = writable;
}

std::shared_ptr<ContentFile> Fs::engine(Inode& n, bool write) {
  if (n.type != S_IFREG) throw_errno(n.type == S_IFDIR ? EISDIR : EINVAL);
  std::shared_ptr<ContentFile> cf;
  {
    std::lock_guard lk(n.mu);
    if (!n.content || (write && !n.content_writable)) {
      // Read-write even for reading: partial-block writes read first, and so does the writeback cache.
      UniqueFd fd;
      bool writable = true;
      try {
        fd = write ? open_for_writing(n) : open_object(n, O_RDWR);
      } catch (const Error& e) {
        int err = e.sys_errno();
        if (write || (err != EACCES && err != EROFS && err != EPERM)) throw;
        fd = open_object(n, O_RDONLY);
        writable = false;
      }
      attach_content(n, std::move(fd), writable);
    }
    cf = n.content;
  }
  touch_engine(n);
  return cf;
}

void Fs::touch_engine(Inode& n) {
  std::vector<std::shared_ptr<Inode>> victims;
  {
    std::lock_guard lk(engines_mu_);
    if (n.engine_listed) {
      if (n.engine_pos != engine_lru_.begin()) engine_lru_.splice(engine_lru_.begin(), engine_lru_, n.engine_pos);
    } else {
      engine_lru_.push_front(n.weak_from_this());
      n.engine_pos = engine_lru_.begin();
      n.engine_listed = true;
    }
    while (engine_lru_.size() > engine_cap_) {
      auto victim = engine_lru_.back().lock();
      engine_lru_.pop_back();
      if (!victim) continue;
      victim->engine_listed = false;
      victims.push_back(std::move(victim));
    }
  }
  for (auto& v : victims) {
    std::lock_guard lk(v->mu);
    // Still in use by a request: it stays (and is listed again at its next use), so that no second engine
    // for the same file is ever made while this one writes.
    if (v->content.use_count() == 1) v->content.reset();
  }
}

void Fs::drop_engine(Inode& n) {
  {
    std::lock_guard lk(n.mu);
    n.content.reset();
  }
  std::lock_guard lk(engines_mu_);
  if (n.engine_listed) {
    engine_lru_.erase(n.engine_pos);
    n.engine_listed = false;
  }
}

void Fs::open(uint64_t ino, int flags) {
  Inode& n = table_.get(ino);
  if (n.type != S_IFREG) throw_errno(n.type == S_IFDIR ? EISDIR : EINVAL);
  // The cipher dir's own permission check, made on every open: a cached engine proves nothing about this one.
  int acc = flags & O_ACCMODE;
  int mask = (acc == O_RDONLY ? R_OK : acc == O_WRONLY ? W_OK : R_OK | W_OK) | ((flags & O_TRUNC) ? W_OK : 0);
  access(ino, mask);
  if (flags & O_TRUNC) engine(n, true)->truncate(0);
}

Entry Fs::create(const Caller& c, uint64_t parent, const std::string& name, mode_t mode, int flags) {
  Named at = resolve(parent, name);
  const int dfd = at.dirfd->get();
  layout::EntryUndo undo(log_undo_failure);
  layout::add_name_sidecar(undo, dfd, at.backing, at.encoded, /*must_be_new=*/(flags & O_EXCL) != 0);
  bool created = true;
  UniqueFd fd(::openat(dfd, at.backing.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode));
  if (!fd && errno == EEXIST && !(flags & O_EXCL)) {
    created = false;
    fd.reset(::openat(dfd, at.backing.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW));
  }
  if (!fd) throw_errno(errno);
  if (created) {
    undo.created_file(dfd, at.backing);
    own(at, c, mode, false);
  }
  struct stat st;
  check_errno(::fstat(fd.get(), &st));
  if (!S_ISREG(st.st_mode)) throw_errno(EISDIR);
  auto n = table_.intern(*at.dir, at.backing, st, {}, /*fresh=*/created);
  try {
    std::shared_ptr<ContentFile> cf;
    {
      std::lock_guard lk(n->mu);
      // The descriptor just opened becomes the engine: the first write needs no second open.
      if (!n->content || !n->content_writable) attach_content(*n, std::move(fd), true);
      cf = n->content;
    }
    touch_engine(*n);
    if (!created && (flags & O_TRUNC)) cf->truncate(0);
    check_errno(::fstat(cf->fd(), &st));
    plain_attr(*n, st);
  } catch (...) {
    table_.forget(*n, 1);
    throw;
  }
  undo.dismiss();
  return {table_.fuse_ino(*n), st};
}

size_t Fs::read(uint64_t ino, std::span<uint8_t> out, uint64_t off) {
  return engine(table_.get(ino), false)->read(off, out);
}

void Fs::write(uint64_t ino, std::span<const uint8_t> data, uint64_t off) {
  engine(table_.get(ino), true)->write(off, data);
}

void Fs::fsync(uint64_t ino, bool datasync) {
  // Also after the engine that wrote was evicted: the backing file's dirty pages are what fsync must flush.
  auto cf = engine(table_.get(ino), false);
  check_errno(datasync ? ::fdatasync(cf->fd()) : ::fsync(cf->fd()));
}

void Fs::fallocate(uint64_t ino, int mode, uint64_t off, uint64_t len) {
  if (mode & ~FALLOC_FL_KEEP_SIZE) throw_errno(EOPNOTSUPP);
  auto engine_ref = engine(table_.get(ino), true);
  ContentFile& cf = *engine_ref;
  uint64_t end = off + len;
  uint64_t size = cf.size();
  if (end <= size) return;  // every byte in range is already allocated (holes are authenticated, not sparse)
  const auto& layout = vol_->content()->layout();
  if (mode & FALLOC_FL_KEEP_SIZE) {
    // Reserve the backing space only: the plaintext size is the backing size, so it must not grow.
    uint64_t bsize = layout.backing_size(size);
    uint64_t bend = layout.backing_size(end);
    if (::fallocate(cf.fd(), FALLOC_FL_KEEP_SIZE, static_cast<off_t>(bsize), static_cast<off_t>(bend - bsize)) != 0 &&
        errno != EOPNOTSUPP)
      throw_errno(errno);
    return;
  }
  // Mode 0: real zeros up to the new end, so a later write cannot fail for want of space.
  std::vector<uint8_t> zeros(std::min<uint64_t>(kFallocChunk, end - size));
  for (uint64_t pos = std::max(size, off); pos < end;) {
    uint64_t n = std::min<uint64_t>(zeros.size(), end - pos);
    cf.write(pos, std::span<const uint8_t>(zeros.data(), n));
    pos += n;
  }
}

void Fs::truncate(Inode& n, uint64_t size) { engine(n, true)->truncate(size); }

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
  if (n.type == S_IFREG) {
    std::lock_guard lk(n.mu);
    cached = n.content;
  }
  int openfd = cached ? cached->fd() : -1;
  if (a.mode) {
    if (openfd >= 0)
      check_errno(::fchmod(openfd, *a.mode & 07777));
    else
      check_errno(::chmod(ProcPath(path_fd()).c_str(), *a.mode & 07777));
  }
  if (a.uid || a.gid) {
    uid_t u = a.uid ? *a.uid : static_cast<uid_t>(-1);
    gid_t g = a.gid ? *a.gid : static_cast<gid_t>(-1);
    if (openfd >= 0)
      check_errno(::fchown(openfd, u, g));
    else
      check_errno(::fchownat(path_fd(), "", u, g, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW));
  }
  if (a.size) truncate(n, *a.size);
  if (a.atime || a.mtime) {
    struct timespec tv[2];
    tv[0] = a.atime ? *a.atime : timespec{0, UTIME_OMIT};
    tv[1] = a.mtime ? *a.mtime : timespec{0, UTIME_OMIT};
    if (openfd >= 0) {
      check_errno(::futimens(openfd, tv));
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

// ---------------------------------------------------------------------------------------------------------
// Directories

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

struct statvfs Fs::statfs() {
  struct statvfs s;
  check_errno(::fstatvfs(vol_->root_fd(), &s));
  s.f_namemax = format::kMaxPlainNameSize;
  return s;
}

// ---------------------------------------------------------------------------------------------------------
// Extended attributes (user.* only, names and values encrypted)

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
