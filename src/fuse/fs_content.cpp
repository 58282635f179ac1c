// File contents: the content engine of each regular file (EngineCache), and the operations on it.
#include <fcntl.h>
#include <linux/falloc.h>
#include <unistd.h>

#include <algorithm>
#include <limits>

#include "fuse/fs.hpp"
#include "fuse/nonroot.hpp"
#include "veilfs/layout/cipher_dir.hpp"
#include "veilfs/util/error.hpp"

namespace veil::fuse {

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
  // first. Like a local disk, let the owner in.
  FdPtr path = table_.fd(n);
  return open_as_owner_rw(path->get(), [&] { return open_object(n, O_RDWR); });
}

UniqueFd Fs::reopen(Inode& n, int flags) {
  FdPtr f = table_.fd(n);
  UniqueFd fd(::open(ProcPath(f->get()).c_str(), flags | O_CLOEXEC));
  if (!fd) throw_errno(errno);
  return fd;
}

EngineCache::Made Fs::make_engine(Inode& n, UniqueFd fd, bool writable) {
  return {std::make_shared<ContentFile>(vol_->content(), std::move(fd), "inode " + std::to_string(n.ino), n.durable),
          writable};
}

std::shared_ptr<EngineSlot> Fs::slot_of(Inode& n) { return {n.shared_from_this(), &n.engine}; }

std::shared_ptr<ContentFile> Fs::engine(Inode& n, bool write) {
  if (n.type != S_IFREG) throw_errno(n.type == S_IFDIR ? EISDIR : EINVAL);
  return engines_.get(slot_of(n), write, [&] {
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
    return make_engine(n, std::move(fd), writable);
  });
}

void Fs::open(uint64_t ino, int flags) {
  Inode& n = table_.get(ino);
  if (n.type != S_IFREG) throw_errno(n.type == S_IFDIR ? EISDIR : EINVAL);
  // The cipher dir's own permission check, made on every open: a cached engine proves nothing about this one.
  int acc = flags & O_ACCMODE;
  int mask = (acc == O_RDONLY ? R_OK : acc == O_WRONLY ? W_OK : R_OK | W_OK) | ((flags & O_TRUNC) ? W_OK : 0);
  access(ino, mask);
  // Each open is where a change made by another writer is noticed: the file may have been replaced.
  if (shared_) engines_.refresh(n.engine);
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
    // The descriptor just opened becomes the engine: the first write needs no second open.
    auto cf = engines_.get(slot_of(*n), /*write=*/true, [&] { return make_engine(*n, std::move(fd), true); });
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

template <class Op>
auto Fs::with_fresh_header(ContentFile& cf, Op&& op) {
  try {
    return op();
  } catch (const Error& e) {
    // Another writer may have given the file a new header since this engine read it: once more with it (only
    // after a failure, so it costs nothing otherwise; tampering still fails the second time).
    if (e.kind() != ErrorKind::Auth) throw;
    cf.forget_header();
    return op();
  }
}

size_t Fs::read(uint64_t ino, std::span<uint8_t> out, uint64_t off) {
  auto cf = engine(table_.get(ino), false);
  return with_fresh_header(*cf, [&] { return cf->read(off, out); });
}

void Fs::write(uint64_t ino, std::span<const uint8_t> data, uint64_t off) {
  auto cf = engine(table_.get(ino), true);
  with_fresh_header(*cf, [&] { cf->write(off, data); });
}

void Fs::fsync(uint64_t ino, bool datasync) {
  // Also after the engine that wrote was evicted: the backing file's dirty pages are what fsync must flush.
  auto cf = engine(table_.get(ino), false);
  cf->sync(datasync);
}

void Fs::release(uint64_t ino, bool wrote) {
  // A writer is done: blocks left loose by its writes are tightened now (after a barrier), not at some later
  // eviction. Costs nothing for a file written in one request. RELEASE does not hold up close(2).
  if (!wrote) return;
  Inode& n = table_.get(ino);
  if (n.type != S_IFREG) return;
  if (auto cf = engines_.cached(n.engine)) cf->settle();
}

void Fs::fallocate(uint64_t ino, int mode, uint64_t off, uint64_t len) {
  // What a local disk (ext4) offers, except COLLAPSE_RANGE and INSERT_RANGE: they shift every later block to
  // another index, and a block's index is bound into its authentication, so each would re-encrypt the rest of
  // the file. They, UNSHARE_RANGE and anything unknown are refused, as the VFS refuses PUNCH_HOLE without
  // KEEP_SIZE and PUNCH_HOLE with ZERO_RANGE.
  constexpr int kKnown = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE;
  const bool punch = (mode & FALLOC_FL_PUNCH_HOLE) != 0, zero = (mode & FALLOC_FL_ZERO_RANGE) != 0;
  const bool keep_size = (mode & FALLOC_FL_KEEP_SIZE) != 0;
  if ((mode & ~kKnown) || (punch && zero) || (punch && !keep_size)) throw_errno(EOPNOTSUPP);
  if (len > std::numeric_limits<int64_t>::max() - off) throw_errno(EFBIG);
  auto engine_ref = engine(table_.get(ino), true);
  ContentFile& cf = *engine_ref;
  if (punch) {
    with_fresh_header(cf, [&] { cf.zero_range(off, len, ContentFile::Space::Release); });  // the size never changes
    return;
  }
  if (zero) with_fresh_header(cf, [&] { cf.zero_range(off, len, ContentFile::Space::Keep); });
  // Mode 0 and the rest of ZERO_RANGE: the backing space of the whole range is reserved, holes included, so that
  // a later write there cannot fail for want of space (reserving changes no byte of the backing file); then,
  // unless KEEP_SIZE, the file grows to off + len as a growing truncate does (the new blocks are holes). A full
  // disk fails the call before the size changes.
  const uint64_t end = off + len;
  const auto& layout = vol_->content()->layout();
  const uint64_t B = layout.block_size();
  const uint64_t from = layout.slot_offset(off / B);
  const uint64_t to = layout.backing_size(end);
  if (to > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) throw_errno(EFBIG);
  if (::fallocate(cf.fd(), FALLOC_FL_KEEP_SIZE, static_cast<off_t>(from), static_cast<off_t>(to - from)) != 0 &&
      errno != EOPNOTSUPP)
    throw_errno(errno);
  if (!keep_size) with_fresh_header(cf, [&] { cf.extend(end); });
}

void Fs::truncate(Inode& n, uint64_t size) { engine(n, true)->truncate(size); }

}  // namespace veil::fuse
