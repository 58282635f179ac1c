#include "veilfs/util/io.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <memory>

#include "veilfs/util/error.hpp"
#include "veilfs/util/unique_fd.hpp"

namespace veil {

namespace {
std::atomic<AtomicWriteHook> g_atomic_write_hook{nullptr};
void atomic_write_stage(const char* stage) {
  if (auto hook = g_atomic_write_hook.load(std::memory_order_relaxed)) hook(stage);
}
}  // namespace

void set_atomic_write_hook(AtomicWriteHook hook) { g_atomic_write_hook.store(hook); }

size_t pread_full(int fd, std::span<uint8_t> buf, uint64_t off) {
  size_t done = 0;
  while (done < buf.size()) {
    ssize_t n = ::pread(fd, buf.data() + done, buf.size() - done, static_cast<off_t>(off + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("pread");
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return done;
}

void pwrite_full(int fd, std::span<const uint8_t> buf, uint64_t off) {
  size_t done = 0;
  while (done < buf.size()) {
    ssize_t n = ::pwrite(fd, buf.data() + done, buf.size() - done, static_cast<off_t>(off + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("pwrite");
    }
    done += static_cast<size_t>(n);
  }
}

uint64_t file_size(int fd) {
  struct stat st;
  if (::fstat(fd, &st) != 0) throw_errno("fstat");
  return static_cast<uint64_t>(st.st_size);
}

std::vector<uint8_t> read_small_file(int dirfd, const std::string& name, size_t max_size) {
  // O_NONBLOCK: a FIFO dropped in under this name must not hang the reader (it fails the S_ISREG check).
  UniqueFd fd(::openat(dirfd, name.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
  if (!fd) throw_errno("open " + name);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) throw_errno("fstat " + name);
  if (!S_ISREG(st.st_mode)) throw_corrupt(name + " is not a regular file");
  if (static_cast<uint64_t>(st.st_size) > max_size)
    throw Error(ErrorKind::Corrupt, EIO, name + " is larger than " + std::to_string(max_size) + " bytes");
  std::vector<uint8_t> data(max_size + 1);
  size_t n = pread_full(fd.get(), data, 0);
  if (n > max_size) throw Error(ErrorKind::Corrupt, EIO, name + " is too large");
  data.resize(n);
  return data;
}

void for_each_dir_entry(int dirfd, const std::function<bool(std::string_view)>& fn) {
  // A stream of its own ("." of dirfd): dirfd may be O_PATH, and its position is left alone.
  int fd = ::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw_errno("open directory for listing");
  DIR* d = ::fdopendir(fd);
  if (!d) {
    ::close(fd);
    throw_errno("fdopendir");
  }
  std::unique_ptr<DIR, int (*)(DIR*)> guard(d, ::closedir);
  while (dirent* e = ::readdir(d)) {
    std::string_view n = e->d_name;
    if (n != "." && n != ".." && !fn(n)) break;
  }
}

bool dir_is_empty(int dirfd) {
  bool empty = true;
  for_each_dir_entry(dirfd, [&](std::string_view) { return empty = false; });
  return empty;
}

void fsync_dir(int dirfd) {
  if (::fsync(dirfd) == 0 || errno == EINVAL) return;
  if (errno != EBADF) throw_errno("fsync directory");
  // An O_PATH descriptor (the mount's) cannot be fsynced itself: through a readable one of the same directory.
  UniqueFd d(::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!d) throw_errno("open directory for fsync");
  if (::fsync(d.get()) != 0 && errno != EINVAL) throw_errno("fsync directory");
}

void write_file_atomic(int dirfd, const std::string& name, const std::string& tmp, std::span<const uint8_t> data,
                       mode_t mode) {
  UniqueFd fd(::openat(dirfd, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode));
  if (!fd) throw_errno("create " + tmp);
  try {
    try {
      pwrite_full(fd.get(), data, 0);
    } catch (const Error& e) {
      throw_errno("write " + tmp, e.sys_errno());  // names the file (pwrite_full cannot)
    }
    if (::fsync(fd.get()) != 0) throw_errno("fsync " + tmp);
    fd.reset();
    atomic_write_stage("after-temp");
    if (::renameat(dirfd, tmp.c_str(), dirfd, name.c_str()) != 0) throw_errno("rename " + tmp);
  } catch (...) {
    ::unlinkat(dirfd, tmp.c_str(), 0);
    throw;
  }
  atomic_write_stage("after-rename");
  fsync_dir(dirfd);
}

}  // namespace veil
