// Trampolines: unpack a fuse_req, call Fs, reply. Every exception stops at with_errno(): nothing throws
// across the libfuse boundary, and every failure becomes one precise errno.
#include "fuse/ops.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <memory>
#include <new>

#include "fuse/errno_boundary.hpp"
#include "fuse/fuse_api.hpp"
#include "fuse/log.hpp"
#include "veilfs/util/error.hpp"

namespace veil::fuse {
namespace {

// Entry, negative-entry and attribute cache, in seconds. With other writers (shared storage) a change made
// elsewhere must show within a second: half of it, whatever a request's own latency adds.
constexpr double kTimeout = 1.0;
constexpr double kSharedTimeout = 0.5;
constexpr unsigned kMaxIo = 1u << 20;

// Every trampoline starts here, so this is where a request is counted as activity (for --idle).
Session& session_of(fuse_req_t req) {
  Session& s = *static_cast<Session*>(fuse_req_userdata(req));
  s.requests.fetch_add(1, std::memory_order_relaxed);
  return s;
}
Fs& fs_of(fuse_req_t req) { return *session_of(req).fs; }
double timeout_of(fuse_req_t req) { return session_of(req).opt->shared_storage ? kSharedTimeout : kTimeout; }

Caller caller(fuse_req_t req) {
  const fuse_ctx* c = fuse_req_ctx(req);
  return {c->uid, c->gid};
}

fuse_entry_param to_param(fuse_req_t req, const Entry& e) {
  const double timeout = timeout_of(req);
  fuse_entry_param p{};
  p.ino = e.ino;
  p.attr = e.attr;
  p.attr_timeout = timeout;
  p.entry_timeout = timeout;
  return p;
}

void reply_entry(fuse_req_t req, const Entry& e) {
  fuse_entry_param p = to_param(req, e);
  if (fuse_reply_entry(req, &p) != 0 && e.ino) fs_of(req).forget(e.ino, 1);  // interrupted: undo the lookup
}

void op_init(void* userdata, fuse_conn_info* conn) {
  Session& session = *static_cast<Session*>(userdata);
  const SessionOptions& opt = *session.opt;
  // Large requests: one round trip and one parallel encryption per MiB (libfuse derives max_pages from this).
  conn->max_write = kMaxIo;
  conn->max_readahead = kMaxIo;
  auto want = [&](unsigned cap) {
    if (conn->capable & cap) conn->want |= cap;
  };
  // The kernel caches pages and file sizes; every size change goes through us, so its size stays exact.
  if (opt.writeback_cache) want(FUSE_CAP_WRITEBACK_CACHE);
  want(FUSE_CAP_READDIRPLUS);
  want(FUSE_CAP_READDIRPLUS_AUTO);
  want(FUSE_CAP_PARALLEL_DIROPS);  // lookups and listings are independent system calls relative to fds
  want(FUSE_CAP_CACHE_SYMLINKS);   // a symlink's target never changes
  want(FUSE_CAP_ASYNC_READ);
  // Files have no handles (contents are per inode), so OPEN and RELEASE are pure round trips where the kernel
  // does the permission checks (SessionOptions::no_open): answering the first OPEN with ENOSYS tells it to send
  // none. Pages are then always kept across opens; a change made to the cipher dir behind the mount shows once
  // the attributes time out (size or mtime differ). O_TRUNC then arrives as a SETATTR: with "atomic O_TRUNC"
  // the kernel would leave it to an OPEN never sent.
  const bool no_open = opt.no_open && (conn->capable & FUSE_CAP_NO_OPEN_SUPPORT) != 0;
  session.no_open.store(no_open, std::memory_order_relaxed);
  if (no_open)
    conn->want &= ~FUSE_CAP_ATOMIC_O_TRUNC;
  else
    want(FUSE_CAP_ATOMIC_O_TRUNC);
  want(FUSE_CAP_AUTO_INVAL_DATA);
  // No asynchronous direct I/O: the kernel's FUSE completes an async O_DIRECT write without invalidating the
  // pages that buffered readers filled meanwhile, so a buffered read after it returned old data (xfstests
  // generic/451; reproduced here with io_submit and two readers). Without it an AIO direct write is performed
  // synchronously, and the generic direct-write path drops those pages after the write.
  conn->want &= ~FUSE_CAP_ASYNC_DIO;
  // Locks stay in the kernel (no lock operations): local semantics on a local mount.
  conn->want &= ~(FUSE_CAP_POSIX_LOCKS | FUSE_CAP_FLOCK_LOCKS);
  // Let the kernel clear set-ID bits on write/truncate/chown by sending setattr, as a local disk does.
  conn->want &= ~FUSE_CAP_HANDLE_KILLPRIV;
  conn->time_gran = 1;
  // More requests in flight for readahead and writeback (the kernel default is 12).
  conn->max_background = 64;
  conn->congestion_threshold = 48;
  log(LogLevel::Debug, "capable 0x%x want 0x%x", conn->capable, conn->want);
}

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  with_errno(req, [&] { reply_entry(req, fs_of(req).lookup(parent, name)); });
}

void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t n) {
  try {
    fs_of(req).forget(ino, n);
  } catch (...) {
  }
  fuse_reply_none(req);
}

void op_forget_multi(fuse_req_t req, size_t count, fuse_forget_data* list) {
  for (size_t i = 0; i < count; ++i) {
    try {
      fs_of(req).forget(list[i].ino, list[i].nlookup);
    } catch (...) {
    }
  }
  fuse_reply_none(req);
}

void op_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  with_errno(req, [&] {
    struct stat st = fs_of(req).getattr(ino);
    fuse_reply_attr(req, &st, timeout_of(req));
  });
}

void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int valid, fuse_file_info*) {
  with_errno(req, [&] {
    SetAttr a;
    if (valid & FUSE_SET_ATTR_MODE) {
      a.mode = attr->st_mode;
      const fuse_ctx* c = fuse_req_ctx(req);
      a.caller_uid = c->uid;
      if (c->uid != 0) {
        a.caller_groups.assign(64, 0);
        int n = fuse_req_getgroups(req, static_cast<int>(a.caller_groups.size()), a.caller_groups.data());
        if (n > static_cast<int>(a.caller_groups.size())) {
          a.caller_groups.assign(static_cast<size_t>(n), 0);
          n = fuse_req_getgroups(req, n, a.caller_groups.data());
        }
        if (n < 0) {
          a.caller_uid = 0;  // groups unknown (the caller has gone): keep to what the kernel asked
          a.caller_groups.clear();
        } else {
          a.caller_groups.resize(static_cast<size_t>(n));
          a.caller_groups.push_back(c->gid);
        }
      }
    }
    if (valid & FUSE_SET_ATTR_UID) a.uid = attr->st_uid;
    if (valid & FUSE_SET_ATTR_GID) a.gid = attr->st_gid;
    if (valid & FUSE_SET_ATTR_SIZE) a.size = static_cast<uint64_t>(attr->st_size);
    if (valid & FUSE_SET_ATTR_ATIME_NOW)
      a.atime = timespec{0, UTIME_NOW};
    else if (valid & FUSE_SET_ATTR_ATIME)
      a.atime = attr->st_atim;
    if (valid & FUSE_SET_ATTR_MTIME_NOW)
      a.mtime = timespec{0, UTIME_NOW};
    else if (valid & FUSE_SET_ATTR_MTIME)
      a.mtime = attr->st_mtim;
    struct stat st = fs_of(req).setattr(ino, a);
    fuse_reply_attr(req, &st, timeout_of(req));
  });
}

void op_readlink(fuse_req_t req, fuse_ino_t ino) {
  with_errno(req, [&] { fuse_reply_readlink(req, fs_of(req).readlink(ino).c_str()); });
}

void op_access(fuse_req_t req, fuse_ino_t ino, int mask) {
  with_errno(req, [&] {
    fs_of(req).access(ino, mask);
    fuse_reply_err(req, 0);
  });
}

void op_mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  with_errno(req, [&] { reply_entry(req, fs_of(req).mknod(caller(req), parent, name, mode, rdev)); });
}

void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  with_errno(req, [&] { reply_entry(req, fs_of(req).mkdir(caller(req), parent, name, mode)); });
}

void op_symlink(fuse_req_t req, const char* target, fuse_ino_t parent, const char* name) {
  with_errno(req, [&] { reply_entry(req, fs_of(req).symlink(caller(req), target, parent, name)); });
}

void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname) {
  with_errno(req, [&] { reply_entry(req, fs_of(req).link(ino, newparent, newname)); });
}

void op_unlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  with_errno(req, [&] {
    fs_of(req).unlink(parent, name);
    fuse_reply_err(req, 0);
  });
}

void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  with_errno(req, [&] {
    fs_of(req).rmdir(parent, name);
    fuse_reply_err(req, 0);
  });
}

void op_rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent, const char* newname,
               unsigned flags) {
  with_errno(req, [&] {
    fs_of(req).rename(parent, name, newparent, newname, flags);
    fuse_reply_err(req, 0);
  });
}

void op_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  if (session_of(req).no_open.load(std::memory_order_relaxed)) {
    fuse_reply_err(req, ENOSYS);  // from now on the kernel opens files without asking
    return;
  }
  with_errno(req, [&] {
    fs_of(req).open(ino, fi->flags);
    fi->fh = 0;
    // With other writers, each open drops the file's cached pages: what another mount wrote shows.
    fi->keep_cache = session_of(req).opt->shared_storage ? 0 : 1;
    fuse_reply_open(req, fi);
  });
}

void op_create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, fuse_file_info* fi) {
  with_errno(req, [&] {
    Entry e = fs_of(req).create(caller(req), parent, name, mode, fi->flags);
    fi->fh = 0;
    fi->keep_cache = 1;
    fuse_entry_param p = to_param(req, e);
    if (fuse_reply_create(req, &p, fi) != 0) fs_of(req).forget(e.ino, 1);
  });
}

// One reusable buffer per worker thread: reads of up to 1 MiB would otherwise allocate and zero each time.
std::span<uint8_t> io_buffer(size_t size) {
  thread_local std::unique_ptr<uint8_t[]> buf;
  thread_local size_t cap = 0;
  if (cap < size) {
    buf.reset(new uint8_t[size]);
    cap = size;
  }
  return {buf.get(), size};
}

void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  with_errno(req, [&] {
    auto buf = io_buffer(size);
    size_t n = fs_of(req).read(ino, buf, static_cast<uint64_t>(off));
    fuse_reply_buf(req, reinterpret_cast<const char*>(buf.data()), n);
  });
}

void op_write(fuse_req_t req, fuse_ino_t ino, const char* data, size_t size, off_t off, fuse_file_info*) {
  with_errno(req, [&] {
    fs_of(req).write(ino, {reinterpret_cast<const uint8_t*>(data), size}, static_cast<uint64_t>(off));
    fuse_reply_write(req, size);
  });
}

// Files created by CREATE are released too. Nothing is freed (the engine belongs to the inode); a writer's
// loose blocks are tightened.
void op_release(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  with_errno(req, [&] {
    fs_of(req).release(ino, (fi->flags & O_ACCMODE) != O_RDONLY);
    fuse_reply_err(req, 0);
  });
}

void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info*) {
  with_errno(req, [&] {
    fs_of(req).fsync(ino, datasync != 0);
    fuse_reply_err(req, 0);
  });
}

void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len, fuse_file_info*) {
  with_errno(req, [&] {
    if (off < 0 || len <= 0) throw Error(ErrorKind::InvalidArgument, EINVAL, "fallocate range");
    fs_of(req).fallocate(ino, mode, static_cast<uint64_t>(off), static_cast<uint64_t>(len));
    fuse_reply_err(req, 0);
  });
}

void op_opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  with_errno(req, [&] {
    DirHandle* dh = fs_of(req).opendir(ino);
    fi->fh = reinterpret_cast<uint64_t>(dh);
    fi->cache_readdir = 0;
    if (fuse_reply_open(req, fi) != 0) fs_of(req).releasedir(dh);
  });
}

void do_readdir(fuse_req_t req, size_t size, off_t off, fuse_file_info* fi, bool plus) {
  with_errno(req, [&] {
    Fs& fs = fs_of(req);
    auto& dh = *reinterpret_cast<DirHandle*>(fi->fh);
    std::vector<char> buf(size);
    size_t pos = 0;
    // The lock must be gone before the reply: once the caller has its entries it may close the directory,
    // and the RELEASEDIR that frees dh can run on another thread at once.
    std::unique_lock lk(dh.mu);
    fs.readdir(dh, static_cast<uint64_t>(off), [&](const DirEntry& de, uint64_t next) {
      size_t need;
      if (plus) {
        fuse_entry_param p{};
        if (de.backing == "." || de.backing == "..") {
          p.attr.st_ino = de.ino;
          p.attr.st_mode = static_cast<mode_t>(de.type) << 12;
        } else {
          try {
            p = to_param(req, fs.lookup_backing(*dh.dir, de.backing));
          } catch (const Error&) {
            return true;  // removed since it was read: skip it
          }
        }
        need = fuse_add_direntry_plus(req, buf.data() + pos, size - pos, de.name.c_str(), &p, static_cast<off_t>(next));
        if (need > size - pos) {
          if (p.ino) fs.forget(p.ino, 1);
          return false;
        }
      } else {
        struct stat st {};
        st.st_ino = de.ino;
        st.st_mode = static_cast<mode_t>(de.type) << 12;
        need = fuse_add_direntry(req, buf.data() + pos, size - pos, de.name.c_str(), &st, static_cast<off_t>(next));
        if (need > size - pos) return false;
      }
      pos += need;
      return true;
    });
    lk.unlock();
    fuse_reply_buf(req, buf.data(), pos);
  });
}

void op_readdir(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
  do_readdir(req, size, off, fi, false);
}

void op_readdirplus(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
  do_readdir(req, size, off, fi, true);
}

void op_releasedir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  with_errno(req, [&] {
    fs_of(req).releasedir(reinterpret_cast<DirHandle*>(fi->fh));
    fuse_reply_err(req, 0);
  });
}

void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info*) {
  with_errno(req, [&] {
    fs_of(req).fsyncdir(ino, datasync != 0);
    fuse_reply_err(req, 0);
  });
}

void op_statfs(fuse_req_t req, fuse_ino_t) {
  with_errno(req, [&] {
    struct statvfs s = fs_of(req).statfs();
    fuse_reply_statfs(req, &s);
  });
}

void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size, int flags) {
  with_errno(req, [&] {
    fs_of(req).setxattr(ino, name, {reinterpret_cast<const uint8_t*>(value), size}, flags);
    fuse_reply_err(req, 0);
  });
}

// Only user.* attributes exist here. The kernel asks for security.capability on every write and chown, so
// that answer is given without building an exception.
bool user_namespace(const char* name) { return std::strncmp(name, "user.", 5) == 0; }

void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  if (!user_namespace(name)) {
    fuse_reply_err(req, EOPNOTSUPP);
    return;
  }
  with_errno(req, [&] {
    auto v = fs_of(req).getxattr(ino, name);
    if (size == 0)
      fuse_reply_xattr(req, v.size());
    else if (v.size() > size)
      fuse_reply_err(req, ERANGE);
    else
      fuse_reply_buf(req, reinterpret_cast<const char*>(v.data()), v.size());
  });
}

void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  with_errno(req, [&] {
    std::string all;
    for (const auto& n : fs_of(req).listxattr(ino)) {
      all += n;
      all.push_back('\0');
    }
    if (size == 0)
      fuse_reply_xattr(req, all.size());
    else if (all.size() > size)
      fuse_reply_err(req, ERANGE);
    else
      fuse_reply_buf(req, all.data(), all.size());
  });
}

void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  with_errno(req, [&] {
    fs_of(req).removexattr(ino, name);
    fuse_reply_err(req, 0);
  });
}

// flush is deliberately absent: writes reach the backing file before they are acknowledged, so there is
// nothing to flush, and the kernel stops sending FLUSH after the first ENOSYS (one round trip less per close).
const fuse_lowlevel_ops kOps = [] {
  fuse_lowlevel_ops o{};
  o.init = op_init;
  o.lookup = op_lookup;
  o.forget = op_forget;
  o.forget_multi = op_forget_multi;
  o.getattr = op_getattr;
  o.setattr = op_setattr;
  o.readlink = op_readlink;
  o.access = op_access;
  o.mknod = op_mknod;
  o.mkdir = op_mkdir;
  o.symlink = op_symlink;
  o.link = op_link;
  o.unlink = op_unlink;
  o.rmdir = op_rmdir;
  o.rename = op_rename;
  o.open = op_open;
  o.create = op_create;
  o.read = op_read;
  o.write = op_write;
  o.release = op_release;
  o.fsync = op_fsync;
  o.fallocate = op_fallocate;
  o.opendir = op_opendir;
  o.readdir = op_readdir;
  o.readdirplus = op_readdirplus;
  o.releasedir = op_releasedir;
  o.fsyncdir = op_fsyncdir;
  o.statfs = op_statfs;
  o.setxattr = op_setxattr;
  o.getxattr = op_getxattr;
  o.listxattr = op_listxattr;
  o.removexattr = op_removexattr;
  return o;
}();

}  // namespace

const fuse_lowlevel_ops& lowlevel_ops() { return kOps; }

}  // namespace veil::fuse
