// Helpers shared by the stress and limit tests: a scratch volume, the real daemon as a child process, child
// processes with deadlines (so that a hung mount fails a test instead of hanging it), and file checks.
// Modelled on tests/faults/faults_test.cpp; kept here so that the two suites can change independently.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "veilfs/volume.hpp"

namespace veil::stress {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// True in ASan/UBSan and TSan builds, where time and memory figures are several times the Release ones.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif

inline std::span<const uint8_t> bytes_of(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

inline std::vector<uint8_t> pattern(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> out(n);
  for (auto& b : out) b = static_cast<uint8_t>(rng());
  return out;
}

inline std::string skip_reason() {
  if (::access("/dev/fuse", R_OK | W_OK) != 0) return "/dev/fuse is missing: stress tests cannot mount";
  if (std::system("fusermount3 -V >/dev/null 2>&1") != 0) return "fusermount3 is missing";
  return {};
}
#define SKIP_WITHOUT_FUSE()                                                               \
  do {                                                                                    \
    if (auto why = ::veil::stress::skip_reason(); !why.empty()) {                         \
      std::fprintf(stderr, "\n!!!!!!!! SKIPPED (NOT RUN): %s !!!!!!!!\n\n", why.c_str()); \
      GTEST_SKIP() << why;                                                                \
    }                                                                                     \
  } while (0)

inline bool is_mounted(const std::string& mnt) {
  struct statfs s {};
  return ::statfs(mnt.c_str(), &s) == 0 && s.f_type == 0x65735546;  // FUSE_SUPER_MAGIC
}

inline void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  if (!out.flush()) throw std::runtime_error("cannot write " + path);
}

// A scratch directory holding a backing dir (optionally a tmpfs mounted here), a cipher dir inside it with a new
// volume, a passfile and a mountpoint. Everything is unmounted and removed at the end.
struct Scratch {
  std::string base, backing, cipher, mnt, passfile;
  bool tmpfs = false;
  // tmpfs_opts: mount options for a tmpfs backing dir (needs root), or empty for a directory under /tmp.
  explicit Scratch(std::string_view passphrase, const std::string& tmpfs_opts = "") {
    char tmpl[] = "/tmp/veilfs-stress-XXXXXX";
    if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp");
    base = tmpl;
    mnt = base + "/mnt";
    passfile = base + "/pass";
    backing = base + "/backing";
    fs::create_directories(mnt);
    fs::create_directories(backing);
    write_text(passfile, std::string(passphrase) + "\n");
    if (!tmpfs_opts.empty() &&
        ::mount("veilfs-stress", backing.c_str(), "tmpfs", 0, tmpfs_opts.c_str()) == 0)  // else stays on disk
      tmpfs = true;
    cipher = backing + "/cipher";
    fs::create_directories(cipher);
    CreateOptions opt;
    opt.kdf = kArgonTesting;
    Volume::create(cipher, bytes_of(passphrase), opt);
  }
  ~Scratch() {
    if (is_mounted(mnt)) std::system(("fusermount3 -uz '" + mnt + "' 2>/dev/null").c_str());
    if (tmpfs) ::umount2(backing.c_str(), MNT_DETACH);
    std::error_code ec;
    fs::remove_all(base, ec);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
};

// The daemon in the foreground, as our child, so that the test can SIGKILL it and read its /proc status.
class Daemon {
 public:
  Daemon(const Scratch& s, const std::string& passfile = "") : s_(s) {
    log_ = s.base + "/daemon.log";
    const std::string pf = passfile.empty() ? s.passfile : passfile;
    pid_ = ::fork();
    if (pid_ == 0) {
      int fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      ::execl(VEILFS_BIN, "veilfs", "-f", "--passfile", pf.c_str(), s.cipher.c_str(), s.mnt.c_str(),
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
    // Wait (bounded) for the mount to appear, or for the daemon to die trying.
    auto deadline = Clock::now() + std::chrono::seconds(kSanitized ? 60 : 20);
    while (Clock::now() < deadline) {
      if (is_mounted(s.mnt)) return;
      int st = 0;
      if (::waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // polling for a condition, bounded
    }
    ADD_FAILURE() << "veilfs did not mount; its log:\n" << log();
  }
  ~Daemon() {
    if (pid_ > 0) unmount();
    if (killed_) std::system(("fusermount3 -uz '" + s_.mnt + "' 2>/dev/null").c_str());  // the dead mount
  }
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  pid_t pid() const { return pid_; }
  bool ok() const { return pid_ > 0 && is_mounted(s_.mnt); }
  std::string log() const {
    std::ifstream in(log_);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  // A field of /proc/PID/status in KiB (VmHWM: peak resident set; VmRSS: current), or -1.
  long status_kib(const std::string& field) const {
    std::ifstream in("/proc/" + std::to_string(pid_) + "/status");
    std::string line;
    while (std::getline(in, line))
      if (line.starts_with(field + ":")) return std::atol(line.c_str() + field.size() + 1);
    return -1;
  }
  // Clean unmount; returns the daemon's exit status.
  int unmount() {
    std::system(("fusermount3 -u '" + s_.mnt + "' 2>/dev/null").c_str());
    return reap(std::chrono::seconds(kSanitized ? 120 : 30));
  }
  // The dead mount stays until this object is destroyed: until then the mountpoint answers ENOTCONN. Unmounting
  // it here would let writers still running in the test create files in the bare mountpoint directory and take
  // them for files written through the daemon.
  void kill9() {
    ::kill(pid_, SIGKILL);
    reap(std::chrono::seconds(10));
    killed_ = true;
  }

 private:
  int reap(std::chrono::seconds limit) {
    if (pid_ <= 0) return -1;
    int st = 0;
    auto deadline = Clock::now() + limit;
    while (::waitpid(pid_, &st, WNOHANG) == 0) {
      if (Clock::now() > deadline) {
        ADD_FAILURE() << "veilfs did not exit after unmount; killing it";
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &st, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    pid_ = -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  }
  const Scratch& s_;
  std::string log_;
  pid_t pid_ = -1;
  bool killed_ = false;
};

// Runs fn in a child process with a deadline, so a hung mount fails the test instead of hanging it.
// Returns fn's result (an errno, 0 for success, or a test-defined code), or -1 if it timed out or crashed.
inline int in_child(const std::function<int()>& fn, int seconds = kSanitized ? 60 : 15) {
  pid_t pid = ::fork();
  if (pid == 0) {
    ::alarm(static_cast<unsigned>(seconds));
    ::_exit(fn());
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  if (WIFSIGNALED(st)) return -1;
  return WEXITSTATUS(st);
}

constexpr int kMismatch = 200;  // in_child code: a read succeeded with wrong bytes

// Writes data to path (create or truncate), fsyncs, closes. Returns 0 or the first errno.
inline int write_file(const std::string& path, std::span<const uint8_t> data) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return errno;
  size_t done = 0;
  int err = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, std::min<size_t>(data.size() - done, 1 << 20));
    if (n < 0) {
      err = errno;
      break;
    }
    done += static_cast<size_t>(n);
  }
  if (!err && ::fsync(fd) != 0) err = errno;
  if (::close(fd) != 0 && !err) err = errno;
  return err;
}

// Reads up to max bytes of path. Returns 0 or the errno of open/read.
inline int read_file(const std::string& path, std::vector<uint8_t>& out, size_t max) {
  out.assign(max, 0);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  size_t done = 0;
  int err = 0;
  while (done < out.size()) {
    ssize_t n = ::read(fd, out.data() + done, out.size() - done);
    if (n < 0) {
      err = errno;
      break;
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  out.resize(done);
  return err;
}

// 0 if path reads back exactly as expected, kMismatch if it reads differently, else the errno.
inline int check_file(const std::string& path, std::span<const uint8_t> expect) {
  std::vector<uint8_t> got;
  if (int e = read_file(path, got, expect.size() + 1)) return e;
  return got.size() == expect.size() && std::equal(expect.begin(), expect.end(), got.begin()) ? 0 : kMismatch;
}

}  // namespace veil::stress
