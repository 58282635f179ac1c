// Making, removing and renaming entries. Each backing step that leaves something on disk is recorded in a
// layout::EntryUndo, so that whatever fails after it removes exactly what was made.
#include <fcntl.h>
#include <linux/fs.h>
#include <unistd.h>

#include "fuse/fs.hpp"
#include "fuse/log.hpp"
#include "fuse/nonroot.hpp"
#include "veilfs/layout/cipher_dir.hpp"
#include "veilfs/util/error.hpp"

namespace veil::fuse {

// An undo step that failed leaves a side file or an IV-less directory behind: fsck finds and repairs both.
void Fs::log_undo_failure(const std::string& backing) {
  log(LogLevel::Error, "could not undo a half-made entry %s; run veilfs fsck", backing.c_str());
}

void Fs::own(const Named& at, const Caller& c, mode_t mode, bool is_dir) {
  // The daemon's own user and group created it already (a set-group-ID directory's group stays either way).
  if (!access_.as_root || (c.uid == ::geteuid() && c.gid == ::getegid())) return;
  gid_t gid = c.gid;
  struct stat pst;
  // In a set-group-ID directory the new entry already has the directory's group, as on a local disk.
  if (::fstat(at.dirfd->get(), &pst) == 0 && (pst.st_mode & S_ISGID)) gid = static_cast<gid_t>(-1);
  if (::fchownat(at.dirfd->get(), at.backing.c_str(), c.uid, gid, AT_SYMLINK_NOFOLLOW) != 0) {
    // sshfs chowns a symlink's target (SFTP SETSTAT follows links), and a backing target is ciphertext that
    // resolves to nothing: a backing filesystem that cannot own symlinks leaves them the daemon's.
    if (!(S_ISLNK(mode) && errno == ENOENT)) throw_errno(errno);
  }
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

void Fs::unlink(uint64_t parent, const std::string& name) {
  Named at = resolve(parent, name);
  struct stat st;
  stat_existing(at, name, st);
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
  stat_existing(at, name, st);
  if (!S_ISDIR(st.st_mode)) throw_errno(ENOTDIR);
  // The IV file goes first (the backing rmdir would see it), and only from an empty directory.
  layout::EntryUndo undo(log_undo_failure);
  layout::strip_iv_of_empty_dir(undo, at.dirfd->get(), at.backing, access_);
  // A directory the kernel knows may be open (fstat of it must still work, with 0 links): keep a way in.
  auto n = table_.find(st.st_dev, st.st_ino);
  if (n) table_.pin(*n);
  check_errno(::unlinkat(at.dirfd->get(), at.backing.c_str(), AT_REMOVEDIR));
  undo.dismiss();
  if (n) table_.unindex(*n);
  layout::remove_side_files(at.dirfd->get(), at.backing, /*symlink=*/false);
}

void Fs::rename(uint64_t parent, const std::string& name, uint64_t newparent, const std::string& newname,
                unsigned flags) {
  if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) throw_errno(EINVAL);
  Named from = resolve(parent, name);
  Named to = resolve(newparent, newname);
  int fd1 = from.dirfd->get(), fd2 = to.dirfd->get();
  struct stat s1, s2;
  stat_existing(from, name, s1);
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
      layout::strip_iv_of_empty_dir(undo, fd2, to.backing, access_);
    } else if (S_ISDIR(s1.st_mode)) {
      throw_errno(ENOTDIR);
    }
    if (n2) {
      // As in unlink and rmdir: what the kernel knows may be open (or a file linked elsewhere); keep a way in,
      // so that fstat of it still works (showing 0 links: xfstests generic/035).
      table_.pin(*n2);
      replaced_gone = S_ISDIR(s2.st_mode);
    }
  }
  layout::add_name_sidecar(undo, fd2, to.backing, to.encoded, /*must_be_new=*/false);
  // A long symlink target lives next to its entry: in place under the new name before the rename, so that no
  // crash leaves the moved symlink without it (an exchange of two swaps them after, each side stays readable).
  std::optional<layout::StagedLinkSidecar> staged;
  if (s_long && !(exchange && d_long)) staged = layout::stage_link_sidecar(undo, fd1, from.backing, fd2, to.backing);
  std::optional<layout::StagedLinkSidecar> staged_back;
  if (exchange && d_long && !s_long) staged_back = layout::stage_link_sidecar(undo, fd2, to.backing, fd1, from.backing);
  check_errno(::renameat2(fd1, from.backing.c_str(), fd2, to.backing.c_str(), flags));
  undo.dismiss();
  if (!exchange) layout::remove_name_sidecar(fd1, from.backing);

  if (staged)
    layout::finish_link_sidecar_move(fd1, from.backing, fd2, *staged);
  else if (staged_back)
    layout::finish_link_sidecar_move(fd2, to.backing, fd1, *staged_back);
  else if (exchange && s_long && d_long)
    layout::exchange_link_sidecars(fd1, from.backing, true, fd2, to.backing, true);
  else if (d_long && !exchange)
    layout::remove_link_sidecar(fd2, to.backing);

  if (n1) table_.set_location(*n1, *to.dir, to.backing);
  if (n2 && exchange) table_.set_location(*n2, *from.dir, from.backing);
  if (n2 && replaced_gone) table_.unindex(*n2);
}

}  // namespace veil::fuse
