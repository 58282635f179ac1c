// The real daemon as a child process, shared by the fault-injection (tests/faults) and stress (tests/stress)
// suites: a scratch volume, a foreground veilfs the test can SIGKILL, child processes with deadlines (so that a
// hung mount fails a test instead of hanging it), and file checks. Each suite wraps Scratch and Daemon with its
// own passphrase and time limits. Needs VEILFS_BIN (the daemon's path) defined by the build.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "veilfs/volume.hpp"

namespace veil::daemon_harness {

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
  if (::access("/dev/fuse", R_OK | W_OK) != 0) return "/dev/fuse is missing: tests that mount cannot run";
  if (std::system("fusermount3 -V >/dev/null 2>&1") != 0) return "fusermount3 is missing";
  return {};
}
#define SKIP_WITHOUT_FUSE()                                                               \
  do {                                                                                    \
    if (auto why = ::veil::daemon_harness::skip_reason(); !why.empty()) {                 \
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

// A scratch directory holding a backing dir (optionally a tmpfs mounted there), a cipher dir inside it with a
// new volume, a passfile and a mountpoint. Everything is unmounted and removed at the end.
struct Scratch {
  std::string base, backing, cipher, mnt, passfile;
  bool tmpfs = false;
  // suite names the temporary directory; tmpfs_opts: mount options for a tmpfs backing dir (needs root; when
  // the mount fails, tmpfs stays false and the backing dir is an ordinary directory), or empty for none.
  Scratch(const std::string& suite, std::string_view passphrase, const std::string& tmpfs_opts = "") {
    std::string tmpl = "/tmp/veilfs-" + suite + "-XXXXXX";
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp");
    base = tmpl;
    mnt = base + "/mnt";
    passfile = base + "/pass";
    backing = base + "/backing";
    fs::create_directories(mnt);
    fs::create_directories(backing);
    write_text(passfile, std::string(passphrase) + "\n");
    if (!tmpfs_opts.empty() &&
        ::mount(("veilfs-" + suite).c_str(), backing.c_str(), "tmpfs", 0, tmpfs_opts.c_str()) == 0)
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

// How long the daemon may take to mount, and to exit after an unmount.
struct DaemonLimits {
  std::chrono::seconds mount;
  std::chrono::seconds unmount;
};

// The daemon in the foreground, as our child, so that the test can SIGKILL it and read its /proc status. Its
// stdout and stderr go to base/daemon.log (appended to by every daemon of one Scratch).
class Daemon {
 public:
  // passfile: empty for the Scratch's own.
  Daemon(const Scratch& s, DaemonLimits limits, const std::string& passfile = "") : s_(s), limits_(limits) {
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
    auto deadline = Clock::now() + limits_.mount;
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
    return reap(limits_.unmount);
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
    expect_no_sanitizer_report();
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  }
  // In a sanitizer build the daemon reports a data race or a memory error on its stderr (this log) and may keep
  // serving, or be SIGKILLed by the test before its exit status could tell: the log is the only reliable witness.
  void expect_no_sanitizer_report() const {
    const std::string l = log();
    if (l.find("Sanitizer") != std::string::npos || l.find("runtime error:") != std::string::npos)
      ADD_FAILURE() << "the veilfs daemon reported a sanitizer error; its log:\n" << l;
  }
  const Scratch& s_;
  const DaemonLimits limits_;
  std::string log_;
  pid_t pid_ = -1;
  bool killed_ = false;
};

// Runs fn in a child process that is killed after `seconds`. Fork only from a thread that is alone in the
// process: a fork while another thread holds the allocator's lock (ASan's has no fork handler) leaves the child
// deadlocked on its first allocation.
inline pid_t spawn_child(const std::function<int()>& fn, int seconds) {
  pid_t pid = ::fork();
  if (pid == 0) {
    ::alarm(static_cast<unsigned>(seconds));
    ::_exit(fn());
  }
  return pid;
}
// The child's result (an errno, 0 for success, or a test-defined code), or -1 if it timed out or crashed.
inline int wait_child(pid_t pid) {
  int st = 0;
  ::waitpid(pid, &st, 0);
  if (WIFSIGNALED(st)) return -1;
  return WEXITSTATUS(st);
}
// Each suite's in_child() runs this with its own deadline.
inline int run_in_child(const std::function<int()>& fn, int seconds) { return wait_child(spawn_child(fn, seconds)); }

constexpr int kMismatch = 200;  // child result: a read succeeded with wrong bytes

// The step of write_file that failed (on this thread), for messages.
inline thread_local const char* g_write_step = "";

// Writes data to path (create, and truncate unless flags says O_APPEND), fsyncs, closes. Returns 0 or the first
// errno.
inline int write_file(const std::string& path, std::span<const uint8_t> data, int flags = O_TRUNC) {
  g_write_step = "open";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | flags, 0644);
  if (fd < 0) return errno;
  g_write_step = "write";
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
  if (!err && (g_write_step = "fsync", ::fsync(fd) != 0)) err = errno;
  if (!err) g_write_step = "close";
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

}  // namespace veil::daemon_harness
