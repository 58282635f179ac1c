// LD_PRELOAD interposer for the crash explorer: records every state-changing system call that the process
// makes on the tree under $VEILFS_CRASH_ROOT to the log $VEILFS_CRASH_LOG (format: log_format.hpp), in the order
// the calls completed, with the data of every write. Without both variables it only passes calls through.
//
// What is recorded: creating calls (open/openat/creat with O_CREAT when the name did not exist, mkdir, symlink,
// mknod), O_TRUNC opens and ftruncate/truncate, pwrite/write/writev/pwritev, fallocate/posix_fallocate,
// rename/renameat/renameat2, link/linkat, unlink/unlinkat/rmdir, chmod/fchmod/fchmodat, fsync/fdatasync (of files
// and of directories), syncfs of the cipher dir's filesystem and sync. Objects are named by inode number
// (st_ino), resolved at the time of the call (descriptors through /proc/self/fd), so that the replayer follows an
// object across renames. Not recorded: extended attributes, timestamps and owners (no check depends on them).
//
// One call at a time: a recorded call holds one process-wide mutex from its first look at the object to the
// log write, so the log's order is the order in which the calls took effect even in the multi-threaded daemon.
// Calls on other files (the FUSE device, /proc, the log itself) pass straight through. The log is written with
// raw system calls, never through the wrappers.
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "log_format.hpp"

using veil::crash::Op;
using veil::crash::Record;

namespace {

struct State {
  bool enabled = false;
  std::string root;  // canonical, no trailing slash
  dev_t dev = 0;
  int log_fd = -1;
};
State g_state;
pthread_once_t g_once = PTHREAD_ONCE_INIT;
pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;

void init() {
  const char* root = std::getenv("VEILFS_CRASH_ROOT");
  const char* log = std::getenv("VEILFS_CRASH_LOG");
  if (!root || !*root || !log || !*log) return;
  char buf[PATH_MAX];
  if (!::realpath(root, buf)) return;
  struct stat st;
  if (::stat(buf, &st) != 0) return;
  int fd = static_cast<int>(
      ::syscall(SYS_openat, AT_FDCWD, log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, static_cast<mode_t>(0600)));
  if (fd < 0) return;
  g_state.root = buf;
  g_state.dev = st.st_dev;
  g_state.log_fd = fd;
  g_state.enabled = true;
}

State& state() {
  pthread_once(&g_once, init);
  return g_state;
}

#define REAL(fn)                                                                            \
  ([]() {                                                                                   \
    static auto const real_fn = reinterpret_cast<decltype(&::fn)>(::dlsym(RTLD_NEXT, #fn)); \
    if (!real_fn) {                                                                         \
      static const char msg[] = "veilfs crash recorder: no next definition of " #fn "\n";   \
      ::syscall(SYS_write, 2, msg, sizeof msg - 1);                                         \
      std::abort();                                                                         \
    }                                                                                       \
    return real_fn;                                                                         \
  }())

class Lock {
 public:
  Lock() { pthread_mutex_lock(&g_mu); }
  ~Lock() { pthread_mutex_unlock(&g_mu); }
  Lock(const Lock&) = delete;
  Lock& operator=(const Lock&) = delete;
};

// Keeps the errno of the real call across the recording.
struct ErrnoKeeper {
  int saved;
  ErrnoKeeper() : saved(errno) {}
  ~ErrnoKeeper() { errno = saved; }
};

std::string readlink_str(const std::string& link) {
  char buf[PATH_MAX + 32];
  ssize_t n = ::readlink(link.c_str(), buf, sizeof buf);
  return n < 0 ? std::string() : std::string(buf, static_cast<size_t>(n));
}

std::string fd_path(int fd) { return readlink_str("/proc/self/fd/" + std::to_string(fd)); }

// "a/./b//c/../d" -> "a/b/d" (absolute paths only).
std::string normalize(const std::string& p) {
  std::vector<std::string> parts;
  size_t i = 0;
  while (i <= p.size()) {
    size_t j = p.find('/', i);
    if (j == std::string::npos) j = p.size();
    std::string c = p.substr(i, j - i);
    if (c == "..") {
      if (!parts.empty()) parts.pop_back();
    } else if (!c.empty() && c != ".") {
      parts.push_back(c);
    }
    i = j + 1;
  }
  std::string out;
  for (const auto& c : parts) out += "/" + c;
  return out.empty() ? "/" : out;
}

// The absolute path that (dirfd, name) stands for now; "/proc/self/fd/N" resolved to what N is.
std::string full_path(int dirfd, const char* name) {
  if (!name) return {};
  std::string p;
  if (name[0] == '/') {
    p = name;
  } else {
    std::string base;
    if (dirfd == AT_FDCWD) {
      char buf[PATH_MAX];
      if (!::getcwd(buf, sizeof buf)) return {};
      base = buf;
    } else {
      base = fd_path(dirfd);
    }
    if (base.empty() || base[0] != '/') return {};
    p = *name ? base + "/" + name : base;
  }
  static const std::string kProcFd = "/proc/self/fd/";
  if (p.rfind(kProcFd, 0) == 0) {
    std::string t = readlink_str(p);
    if (!t.empty()) p = t;
  }
  return normalize(p);
}

bool under_root(const std::string& p) {
  const State& s = state();
  return s.enabled && (p == s.root || (p.size() > s.root.size() && p.compare(0, s.root.size(), s.root) == 0 &&
                                       p[s.root.size()] == '/'));
}
bool fd_under_root(int fd) { return state().enabled && under_root(fd_path(fd)); }

std::string rel(const std::string& p) {
  const State& s = state();
  if (p == s.root) return "";
  return p.substr(s.root.size() + 1);
}
std::string dirname_of(const std::string& p) {
  size_t k = p.rfind('/');
  return k == 0 ? "/" : p.substr(0, k);
}
std::string basename_of(const std::string& p) { return p.substr(p.rfind('/') + 1); }

uint64_t ino_of_path(const std::string& p, bool follow = false) {
  struct stat st;
  int rc = follow ? ::stat(p.c_str(), &st) : ::lstat(p.c_str(), &st);
  return rc == 0 ? st.st_ino : 0;
}

Record base_record(Op op, const char* call) {
  Record r;
  r.op = op;
  r.pid = static_cast<uint64_t>(::getpid());
  r.tid = static_cast<uint64_t>(::syscall(SYS_gettid));
  r.call = call;
  return r;
}

// Fills the name fields of r for the entry at absolute path p.
void set_entry(Record& r, const std::string& p) {
  r.dir = ino_of_path(dirname_of(p), true);
  r.name = basename_of(p);
  r.path = rel(p);
}

void emit(const Record& r) {
  std::string out;
  veil::crash::encode(r, out);
  size_t done = 0;
  while (done < out.size()) {
    long n = ::syscall(SYS_write, state().log_fd, out.data() + done, out.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
}

// --- creating opens ------------------------------------------------------------------------------------------

template <class Call>
int recorded_open(int dirfd, const char* path, int flags, const char* call, Call&& real) {
  if (!(flags & (O_CREAT | O_TRUNC)) || !state().enabled) return real();
  const std::string full = full_path(dirfd, path);
  if (!under_root(full)) return real();
  Lock lk;
  struct stat pre;
  const bool existed = ::lstat(full.c_str(), &pre) == 0;
  int fd = real();
  ErrnoKeeper keep;
  struct stat post;
  if (fd < 0 || ::fstat(fd, &post) != 0) return fd;
  if (!existed && (flags & O_CREAT)) {
    Record r = base_record(Op::Create, call);
    set_entry(r, full);
    r.ino = post.st_ino;
    r.mode = post.st_mode;
    emit(r);
  } else if ((flags & O_TRUNC) && S_ISREG(post.st_mode) && (flags & O_ACCMODE) != O_RDONLY) {
    Record r = base_record(Op::Truncate, call);
    r.ino = post.st_ino;
    r.path = rel(full);
    r.off = 0;
    emit(r);
  }
  return fd;
}

mode_t mode_arg(int flags, va_list ap) {
  return (flags & O_CREAT) || (flags & __O_TMPFILE) == __O_TMPFILE ? static_cast<mode_t>(va_arg(ap, int)) : 0;
}

// --- writes --------------------------------------------------------------------------------------------------

void record_write(int fd, uint64_t off, std::string data, const char* call) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return;
  Record r = base_record(Op::Write, call);
  r.ino = st.st_ino;
  r.off = off;
  r.size_after = static_cast<uint64_t>(st.st_size);
  r.path = rel(fd_path(fd));
  r.data = std::move(data);
  emit(r);
}

std::string gather(const struct iovec* iov, int cnt, size_t n) {
  std::string s;
  s.reserve(n);
  for (int i = 0; i < cnt && s.size() < n; ++i)
    s.append(static_cast<const char*>(iov[i].iov_base), std::min(iov[i].iov_len, n - s.size()));
  return s;
}

// Where a write() through fd lands: the end for O_APPEND, else the file position.
uint64_t write_position(int fd) {
  int fl = ::fcntl(fd, F_GETFL);
  if (fl >= 0 && (fl & O_APPEND)) {
    struct stat st;
    return ::fstat(fd, &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
  }
  off_t o = ::lseek(fd, 0, SEEK_CUR);
  return o < 0 ? 0 : static_cast<uint64_t>(o);
}

// --- the others ----------------------------------------------------------------------------------------------

void record_by_fd(Op op, int fd, const char* call, uint64_t off = 0, uint64_t len = 0, uint64_t flags = 0) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return;
  Record r = base_record(op, call);
  r.ino = st.st_ino;
  r.off = off;
  r.len = len;
  r.flags = flags;
  r.is_dir = S_ISDIR(st.st_mode) ? 1 : 0;
  r.size_after = static_cast<uint64_t>(st.st_size);
  r.mode = st.st_mode & 07777;
  r.path = rel(fd_path(fd));
  emit(r);
}

template <class Call>
int recorded_fd_call(int fd, Op op, const char* call, Call&& real, uint64_t off = 0, uint64_t len = 0,
                     uint64_t flags = 0) {
  if (!fd_under_root(fd)) return real();
  Lock lk;
  int rc = real();
  ErrnoKeeper keep;
  if (rc == 0) record_by_fd(op, fd, call, off, len, flags);
  return rc;
}

template <class Call>
int recorded_rename(int fd1, const char* n1, int fd2, const char* n2, unsigned flags, const char* call, Call&& real) {
  if (!state().enabled) return real();
  const std::string a = full_path(fd1, n1), b = full_path(fd2, n2);
  if (!under_root(a) && !under_root(b)) return real();
  Lock lk;
  const uint64_t src = ino_of_path(a), dst = ino_of_path(b);
  int rc = real();
  ErrnoKeeper keep;
  if (rc != 0) return rc;
  Record r = base_record(Op::Rename, call);
  set_entry(r, a);
  r.dir2 = ino_of_path(dirname_of(b), true);
  r.name2 = basename_of(b);
  r.path2 = rel(b);
  r.ino = src;
  r.ino2 = dst;
  r.flags = flags;
  emit(r);
  return rc;
}

template <class Call>
int recorded_new_entry(int dirfd, const char* name, Op op, const char* call, const char* target, Call&& real) {
  if (!state().enabled) return real();
  const std::string full = full_path(dirfd, name);
  if (!under_root(full)) return real();
  Lock lk;
  int rc = real();
  ErrnoKeeper keep;
  struct stat st;
  if (rc != 0 || ::lstat(full.c_str(), &st) != 0) return rc;
  Record r = base_record(op, call);
  set_entry(r, full);
  r.ino = st.st_ino;
  r.mode = st.st_mode;
  if (target) r.data = target;
  emit(r);
  return rc;
}

template <class Call>
int recorded_unlink(int dirfd, const char* name, bool rmdir, const char* call, Call&& real) {
  if (!state().enabled) return real();
  const std::string full = full_path(dirfd, name);
  if (!under_root(full)) return real();
  Lock lk;
  const uint64_t victim = ino_of_path(full);
  int rc = real();
  ErrnoKeeper keep;
  if (rc != 0) return rc;
  Record r = base_record(Op::Unlink, call);
  set_entry(r, full);
  r.ino = victim;
  r.flags = rmdir ? veil::crash::kRemoveDir : 0;
  emit(r);
  return rc;
}

template <class Call>
int recorded_chmod_path(const std::string& full, mode_t mode, const char* call, Call&& real) {
  if (!under_root(full)) return real();
  Lock lk;
  int rc = real();
  ErrnoKeeper keep;
  if (rc != 0) return rc;
  Record r = base_record(Op::Chmod, call);
  r.ino = ino_of_path(full, true);
  r.mode = mode & 07777;
  r.path = rel(full);
  emit(r);
  return rc;
}

}  // namespace

extern "C" {

// ---- opens ----
int open(const char* path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  mode_t mode = mode_arg(flags, ap);
  va_end(ap);
  return recorded_open(AT_FDCWD, path, flags, "open", [&] { return REAL(open)(path, flags, mode); });
}
int open64(const char* path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  mode_t mode = mode_arg(flags, ap);
  va_end(ap);
  return recorded_open(AT_FDCWD, path, flags, "open64", [&] { return REAL(open64)(path, flags, mode); });
}
int openat(int dirfd, const char* path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  mode_t mode = mode_arg(flags, ap);
  va_end(ap);
  return recorded_open(dirfd, path, flags, "openat", [&] { return REAL(openat)(dirfd, path, flags, mode); });
}
int openat64(int dirfd, const char* path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  mode_t mode = mode_arg(flags, ap);
  va_end(ap);
  return recorded_open(dirfd, path, flags, "openat64", [&] { return REAL(openat64)(dirfd, path, flags, mode); });
}
int creat(const char* path, mode_t mode) {
  return recorded_open(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, "creat", [&] { return REAL(creat)(path, mode); });
}
int creat64(const char* path, mode_t mode) {
  return recorded_open(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, "creat64",
                       [&] { return REAL(creat64)(path, mode); });
}

// ---- writes ----
ssize_t pwrite(int fd, const void* buf, size_t n, off_t off) {
  if (!fd_under_root(fd)) return REAL(pwrite)(fd, buf, n, off);
  Lock lk;
  ssize_t r = REAL(pwrite)(fd, buf, n, off);
  ErrnoKeeper keep;
  if (r > 0) record_write(fd, static_cast<uint64_t>(off), std::string(static_cast<const char*>(buf), r), "pwrite");
  return r;
}
ssize_t pwrite64(int fd, const void* buf, size_t n, off64_t off) {
  if (!fd_under_root(fd)) return REAL(pwrite64)(fd, buf, n, off);
  Lock lk;
  ssize_t r = REAL(pwrite64)(fd, buf, n, off);
  ErrnoKeeper keep;
  if (r > 0) record_write(fd, static_cast<uint64_t>(off), std::string(static_cast<const char*>(buf), r), "pwrite64");
  return r;
}
ssize_t write(int fd, const void* buf, size_t n) {
  if (!fd_under_root(fd)) return REAL(write)(fd, buf, n);
  Lock lk;
  const uint64_t off = write_position(fd);
  ssize_t r = REAL(write)(fd, buf, n);
  ErrnoKeeper keep;
  if (r > 0) record_write(fd, off, std::string(static_cast<const char*>(buf), r), "write");
  return r;
}
ssize_t writev(int fd, const struct iovec* iov, int cnt) {
  if (!fd_under_root(fd)) return REAL(writev)(fd, iov, cnt);
  Lock lk;
  const uint64_t off = write_position(fd);
  ssize_t r = REAL(writev)(fd, iov, cnt);
  ErrnoKeeper keep;
  if (r > 0) record_write(fd, off, gather(iov, cnt, static_cast<size_t>(r)), "writev");
  return r;
}
ssize_t pwritev(int fd, const struct iovec* iov, int cnt, off_t off) {
  if (!fd_under_root(fd)) return REAL(pwritev)(fd, iov, cnt, off);
  Lock lk;
  ssize_t r = REAL(pwritev)(fd, iov, cnt, off);
  ErrnoKeeper keep;
  if (r > 0) record_write(fd, static_cast<uint64_t>(off), gather(iov, cnt, static_cast<size_t>(r)), "pwritev");
  return r;
}
ssize_t pwritev64(int fd, const struct iovec* iov, int cnt, off64_t off) {
  if (!fd_under_root(fd)) return REAL(pwritev64)(fd, iov, cnt, off);
  Lock lk;
  ssize_t r = REAL(pwritev64)(fd, iov, cnt, off);
  ErrnoKeeper keep;
  if (r > 0) record_write(fd, static_cast<uint64_t>(off), gather(iov, cnt, static_cast<size_t>(r)), "pwritev64");
  return r;
}

// ---- sizes ----
int ftruncate(int fd, off_t len) {
  return recorded_fd_call(
      fd, Op::Truncate, "ftruncate", [&] { return REAL(ftruncate)(fd, len); }, static_cast<uint64_t>(len));
}
int ftruncate64(int fd, off64_t len) {
  return recorded_fd_call(
      fd, Op::Truncate, "ftruncate64", [&] { return REAL(ftruncate64)(fd, len); }, static_cast<uint64_t>(len));
}
int truncate(const char* path, off_t len) {
  const std::string full = state().enabled ? full_path(AT_FDCWD, path) : std::string();
  if (!under_root(full)) return REAL(truncate)(path, len);
  Lock lk;
  int rc = REAL(truncate)(path, len);
  ErrnoKeeper keep;
  if (rc == 0) {
    Record r = base_record(Op::Truncate, "truncate");
    r.ino = ino_of_path(full, true);
    r.off = static_cast<uint64_t>(len);
    r.path = rel(full);
    emit(r);
  }
  return rc;
}
int fallocate(int fd, int mode, off_t off, off_t len) {
  return recorded_fd_call(
      fd, Op::Falloc, "fallocate", [&] { return REAL(fallocate)(fd, mode, off, len); }, static_cast<uint64_t>(off),
      static_cast<uint64_t>(len), static_cast<uint64_t>(mode));
}
int fallocate64(int fd, int mode, off64_t off, off64_t len) {
  return recorded_fd_call(
      fd, Op::Falloc, "fallocate64", [&] { return REAL(fallocate64)(fd, mode, off, len); }, static_cast<uint64_t>(off),
      static_cast<uint64_t>(len), static_cast<uint64_t>(mode));
}
int posix_fallocate(int fd, off_t off, off_t len) {
  if (!fd_under_root(fd)) return REAL(posix_fallocate)(fd, off, len);
  Lock lk;
  int rc = REAL(posix_fallocate)(fd, off, len);  // returns the error number, errno is untouched
  if (rc == 0) {
    ErrnoKeeper keep;
    record_by_fd(Op::Falloc, fd, "posix_fallocate", static_cast<uint64_t>(off), static_cast<uint64_t>(len), 0);
  }
  return rc;
}

// ---- names ----
int rename(const char* a, const char* b) {
  return recorded_rename(AT_FDCWD, a, AT_FDCWD, b, 0, "rename", [&] { return REAL(rename)(a, b); });
}
int renameat(int fd1, const char* a, int fd2, const char* b) {
  return recorded_rename(fd1, a, fd2, b, 0, "renameat", [&] { return REAL(renameat)(fd1, a, fd2, b); });
}
int renameat2(int fd1, const char* a, int fd2, const char* b, unsigned flags) {
  return recorded_rename(fd1, a, fd2, b, flags, "renameat2", [&] { return REAL(renameat2)(fd1, a, fd2, b, flags); });
}
int link(const char* a, const char* b) {
  return recorded_new_entry(AT_FDCWD, b, Op::Link, "link", nullptr, [&] { return REAL(link)(a, b); });
}
int linkat(int fd1, const char* a, int fd2, const char* b, int flags) {
  return recorded_new_entry(fd2, b, Op::Link, "linkat", nullptr, [&] { return REAL(linkat)(fd1, a, fd2, b, flags); });
}
int unlink(const char* p) {
  return recorded_unlink(AT_FDCWD, p, false, "unlink", [&] { return REAL(unlink)(p); });
}
int unlinkat(int dirfd, const char* p, int flags) {
  return recorded_unlink(dirfd, p, (flags & AT_REMOVEDIR) != 0, "unlinkat",
                         [&] { return REAL(unlinkat)(dirfd, p, flags); });
}
int rmdir(const char* p) {
  return recorded_unlink(AT_FDCWD, p, true, "rmdir", [&] { return REAL(rmdir)(p); });
}
int mkdir(const char* p, mode_t mode) {
  return recorded_new_entry(AT_FDCWD, p, Op::Create, "mkdir", nullptr, [&] { return REAL(mkdir)(p, mode); });
}
int mkdirat(int dirfd, const char* p, mode_t mode) {
  return recorded_new_entry(dirfd, p, Op::Create, "mkdirat", nullptr, [&] { return REAL(mkdirat)(dirfd, p, mode); });
}
int symlink(const char* target, const char* p) {
  return recorded_new_entry(AT_FDCWD, p, Op::Create, "symlink", target, [&] { return REAL(symlink)(target, p); });
}
int symlinkat(const char* target, int dirfd, const char* p) {
  return recorded_new_entry(dirfd, p, Op::Create, "symlinkat", target,
                            [&] { return REAL(symlinkat)(target, dirfd, p); });
}
int mknod(const char* p, mode_t mode, dev_t dev) {
  return recorded_new_entry(AT_FDCWD, p, Op::Create, "mknod", nullptr, [&] { return REAL(mknod)(p, mode, dev); });
}
int mknodat(int dirfd, const char* p, mode_t mode, dev_t dev) {
  return recorded_new_entry(dirfd, p, Op::Create, "mknodat", nullptr,
                            [&] { return REAL(mknodat)(dirfd, p, mode, dev); });
}

// ---- permissions ----
int chmod(const char* p, mode_t mode) {
  const std::string full = state().enabled ? full_path(AT_FDCWD, p) : std::string();
  return recorded_chmod_path(full, mode, "chmod", [&] { return REAL(chmod)(p, mode); });
}
int fchmodat(int dirfd, const char* p, mode_t mode, int flags) {
  const std::string full = state().enabled ? full_path(dirfd, p) : std::string();
  return recorded_chmod_path(full, mode, "fchmodat", [&] { return REAL(fchmodat)(dirfd, p, mode, flags); });
}
int fchmod(int fd, mode_t mode) {
  return recorded_fd_call(fd, Op::Chmod, "fchmod", [&] { return REAL(fchmod)(fd, mode); });
}

// ---- barriers ----
int fsync(int fd) {
  return recorded_fd_call(fd, Op::Fsync, "fsync", [&] { return REAL(fsync)(fd); });
}
int fdatasync(int fd) {
  return recorded_fd_call(
      fd, Op::Fsync, "fdatasync", [&] { return REAL(fdatasync)(fd); }, 0, 0, veil::crash::kDataSync);
}
int syncfs(int fd) {
  struct stat st;
  if (!state().enabled || ::fstat(fd, &st) != 0 || st.st_dev != state().dev) return REAL(syncfs)(fd);
  Lock lk;
  int rc = REAL(syncfs)(fd);
  ErrnoKeeper keep;
  if (rc == 0) emit(base_record(Op::Syncfs, "syncfs"));
  return rc;
}
void sync() {
  if (!state().enabled) return REAL(sync)();
  Lock lk;
  REAL(sync)();
  ErrnoKeeper keep;
  emit(base_record(Op::Syncfs, "sync"));
}

}  // extern "C"
