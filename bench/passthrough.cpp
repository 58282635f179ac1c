// veilfs_bench_passthrough: a minimal high-level libfuse3 pass-through without encryption, the "what FUSE alone
// costs" column of the benchmark. It mirrors libfuse's example/passthrough.c (3.14): the same default timeouts
// (0, so every lookup goes to the daemon), use_ino, one file descriptor per open file, but it serves a given
// backing directory instead of "/".
//
// usage: veilfs_bench_passthrough BACKINGDIR MOUNTPOINT [fuse options, e.g. -f]
#define FUSE_USE_VERSION 31

#include <dirent.h>
#include <fcntl.h>
#include <fuse.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

int g_root = -1;  // O_PATH descriptor of the backing directory; every path below is resolved relative to it

// FUSE paths start with '/'; the root itself becomes ".".
const char* rel(const char* path) {
  while (*path == '/') ++path;
  return *path ? path : ".";
}

int err(int rc) { return rc < 0 ? -errno : rc; }

void* pt_init(fuse_conn_info* /*conn*/, fuse_config* cfg) {
  cfg->use_ino = 1;
  // As in libfuse's example: no kernel caching of names or attributes, so a changed backing dir is seen at once.
  cfg->entry_timeout = 0;
  cfg->attr_timeout = 0;
  cfg->negative_timeout = 0;
  return nullptr;
}

int pt_getattr(const char* path, struct stat* st, fuse_file_info* fi) {
  if (fi) return err(::fstat(static_cast<int>(fi->fh), st));
  return err(::fstatat(g_root, rel(path), st, AT_SYMLINK_NOFOLLOW));
}

int pt_access(const char* path, int mask) { return err(::faccessat(g_root, rel(path), mask, 0)); }

int pt_readlink(const char* path, char* buf, size_t size) {
  ssize_t n = ::readlinkat(g_root, rel(path), buf, size - 1);
  if (n < 0) return -errno;
  buf[n] = '\0';
  return 0;
}

struct Dir {
  DIR* dp;
};

int pt_opendir(const char* path, fuse_file_info* fi) {
  int fd = ::openat(g_root, rel(path), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -errno;
  DIR* dp = ::fdopendir(fd);
  if (!dp) {
    int e = errno;
    ::close(fd);
    return -e;
  }
  fi->fh = reinterpret_cast<uint64_t>(new Dir{dp});
  return 0;
}

int pt_readdir(const char* /*path*/, void* buf, fuse_fill_dir_t filler, off_t offset, fuse_file_info* fi,
               fuse_readdir_flags /*flags*/) {
  auto* d = reinterpret_cast<Dir*>(fi->fh);
  if (offset == 0)
    ::rewinddir(d->dp);
  else
    ::seekdir(d->dp, offset);
  errno = 0;
  while (dirent* de = ::readdir(d->dp)) {
    struct stat st {};
    st.st_ino = de->d_ino;
    st.st_mode = static_cast<mode_t>(de->d_type) << 12;
    if (filler(buf, de->d_name, &st, ::telldir(d->dp), static_cast<fuse_fill_dir_flags>(0))) break;
  }
  return -errno;
}

int pt_releasedir(const char* /*path*/, fuse_file_info* fi) {
  auto* d = reinterpret_cast<Dir*>(fi->fh);
  ::closedir(d->dp);
  delete d;
  return 0;
}

int pt_mknod(const char* path, mode_t mode, dev_t rdev) {
  if (S_ISFIFO(mode)) return err(::mkfifoat(g_root, rel(path), mode));
  return err(::mknodat(g_root, rel(path), mode, rdev));
}
int pt_mkdir(const char* path, mode_t mode) { return err(::mkdirat(g_root, rel(path), mode)); }
int pt_unlink(const char* path) { return err(::unlinkat(g_root, rel(path), 0)); }
int pt_rmdir(const char* path) { return err(::unlinkat(g_root, rel(path), AT_REMOVEDIR)); }
int pt_symlink(const char* target, const char* link) { return err(::symlinkat(target, g_root, rel(link))); }
int pt_rename(const char* from, const char* to, unsigned int flags) {
  if (flags) return -EINVAL;  // as in libfuse's high-level example
  return err(::renameat(g_root, rel(from), g_root, rel(to)));
}
int pt_link(const char* from, const char* to) { return err(::linkat(g_root, rel(from), g_root, rel(to), 0)); }

int pt_chmod(const char* path, mode_t mode, fuse_file_info* fi) {
  if (fi) return err(::fchmod(static_cast<int>(fi->fh), mode));
  return err(::fchmodat(g_root, rel(path), mode, 0));
}
int pt_chown(const char* path, uid_t uid, gid_t gid, fuse_file_info* fi) {
  if (fi) return err(::fchown(static_cast<int>(fi->fh), uid, gid));
  return err(::fchownat(g_root, rel(path), uid, gid, AT_SYMLINK_NOFOLLOW));
}
int pt_truncate(const char* path, off_t size, fuse_file_info* fi) {
  if (fi) return err(::ftruncate(static_cast<int>(fi->fh), size));
  int fd = ::openat(g_root, rel(path), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  int rc = err(::ftruncate(fd, size));
  ::close(fd);
  return rc;
}
int pt_utimens(const char* path, const struct timespec ts[2], fuse_file_info* fi) {
  if (fi) return err(::futimens(static_cast<int>(fi->fh), ts));
  return err(::utimensat(g_root, rel(path), ts, AT_SYMLINK_NOFOLLOW));
}

int pt_create(const char* path, mode_t mode, fuse_file_info* fi) {
  int fd = ::openat(g_root, rel(path), fi->flags | O_CLOEXEC, mode);
  if (fd < 0) return -errno;
  fi->fh = static_cast<uint64_t>(fd);
  return 0;
}
int pt_open(const char* path, fuse_file_info* fi) {
  int fd = ::openat(g_root, rel(path), fi->flags | O_CLOEXEC);
  if (fd < 0) return -errno;
  fi->fh = static_cast<uint64_t>(fd);
  return 0;
}
int pt_read(const char* /*path*/, char* buf, size_t size, off_t off, fuse_file_info* fi) {
  ssize_t n = ::pread(static_cast<int>(fi->fh), buf, size, off);
  return n < 0 ? -errno : static_cast<int>(n);
}
int pt_write(const char* /*path*/, const char* buf, size_t size, off_t off, fuse_file_info* fi) {
  ssize_t n = ::pwrite(static_cast<int>(fi->fh), buf, size, off);
  return n < 0 ? -errno : static_cast<int>(n);
}
int pt_statfs(const char* /*path*/, struct statvfs* st) { return err(::fstatvfs(g_root, st)); }
int pt_flush(const char* /*path*/, fuse_file_info* fi) {
  // close() of a dup reports delayed write errors without closing the file (as in libfuse's example).
  int fd = ::dup(static_cast<int>(fi->fh));
  if (fd < 0) return -errno;
  return err(::close(fd));
}
int pt_release(const char* /*path*/, fuse_file_info* fi) {
  ::close(static_cast<int>(fi->fh));
  return 0;
}
int pt_fsync(const char* /*path*/, int datasync, fuse_file_info* fi) {
  int fd = static_cast<int>(fi->fh);
  return err(datasync ? ::fdatasync(fd) : ::fsync(fd));
}
int pt_fallocate(const char* /*path*/, int mode, off_t off, off_t len, fuse_file_info* fi) {
  if (mode) return -EOPNOTSUPP;
  return -::posix_fallocate(static_cast<int>(fi->fh), off, len);
}
off_t pt_lseek(const char* /*path*/, off_t off, int whence, fuse_file_info* fi) {
  off_t r = ::lseek(static_cast<int>(fi->fh), off, whence);
  return r < 0 ? -errno : r;
}

fuse_operations make_ops() {
  fuse_operations o{};
  o.init = pt_init;
  o.getattr = pt_getattr;
  o.access = pt_access;
  o.readlink = pt_readlink;
  o.opendir = pt_opendir;
  o.readdir = pt_readdir;
  o.releasedir = pt_releasedir;
  o.mknod = pt_mknod;
  o.mkdir = pt_mkdir;
  o.symlink = pt_symlink;
  o.unlink = pt_unlink;
  o.rmdir = pt_rmdir;
  o.rename = pt_rename;
  o.link = pt_link;
  o.chmod = pt_chmod;
  o.chown = pt_chown;
  o.truncate = pt_truncate;
  o.utimens = pt_utimens;
  o.create = pt_create;
  o.open = pt_open;
  o.read = pt_read;
  o.write = pt_write;
  o.statfs = pt_statfs;
  o.flush = pt_flush;
  o.release = pt_release;
  o.fsync = pt_fsync;
  o.fallocate = pt_fallocate;
  o.lseek = pt_lseek;
  return o;
}

}  // namespace

int main(int argc, char* argv[]) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s BACKINGDIR MOUNTPOINT [fuse options]\n", argv[0]);
    return 2;
  }
  // Resolve the backing dir before fuse_main daemonizes (it changes the working directory to "/").
  char real[PATH_MAX];
  if (!::realpath(argv[1], real)) {
    std::perror(argv[1]);
    return 1;
  }
  g_root = ::open(real, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (g_root < 0) {
    std::perror(real);
    return 1;
  }
  ::umask(0);
  std::vector<char*> args{argv[0]};
  for (int i = 2; i < argc; ++i) args.push_back(argv[i]);
  fuse_operations ops = make_ops();
  return fuse_main(static_cast<int>(args.size()), args.data(), &ops, nullptr);
}
