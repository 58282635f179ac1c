// The session's life: mount, tune the new mount's device info, detach, serve requests until unmounted or
// signalled (writing everything back first), unmount. The requests themselves are ops.cpp's.
#include "fuse/session.hpp"

#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <thread>

#include "fuse/fuse_api.hpp"
#include "fuse/log.hpp"
#include "fuse/ops.hpp"
#include "veilfs/cli/exit_codes.hpp"

namespace veil::fuse {
namespace {

constexpr unsigned kReadaheadKb = 8192;  // see tune_bdi()
constexpr unsigned kMaxDirtyRatio = 20;  // percent of the dirty limit, see tune_bdi()

// Tunes the mount's backing-device-info in sysfs. Best effort: only root may write sysfs, and the mount works
// either way. Reads /proc, never the new mount itself (which nobody serves yet).
// Readahead: the kernel caps FUSE readahead at the bdi default (128 KiB), far below max_pages: raise it so that
// sequential reads arrive as 1 MiB requests (one round trip and one parallel decryption each), several in flight
// so that the backing disk's reads overlap decryption (cold dd of 512 MiB here: 1 MiB window ~400 MB/s, 4 MiB
// ~600, 8 MiB ~780).
void tune_bdi(const std::string& mountpoint) {
  char real[PATH_MAX];
  if (!::realpath(mountpoint.c_str(), real)) return;
  std::ifstream in("/proc/self/mountinfo");
  std::string line, dev;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string id, parent, majmin, root, mnt;
    if (!(ls >> id >> parent >> majmin >> root >> mnt)) continue;
    std::string unescaped;  // mountinfo writes ' ', '\t', '\n' and '\\' as octal escapes
    for (size_t i = 0; i < mnt.size(); ++i) {
      if (mnt[i] == '\\' && i + 3 < mnt.size()) {
        unescaped.push_back(static_cast<char>(std::strtol(mnt.substr(i + 1, 3).c_str(), nullptr, 8)));
        i += 3;
      } else {
        unescaped.push_back(mnt[i]);
      }
    }
    if (unescaped == real) dev = majmin;  // the last match is the newest mount
  }
  if (dev.empty()) return;
  std::ofstream("/sys/class/bdi/" + dev + "/read_ahead_kb") << kReadaheadKb << "\n";
  // The kernel lets a FUSE mount hold only 1% of the dirty-page limit (a guard against untrusted servers), so
  // small random writes are throttled to one daemon round trip each. This daemon is the trusted local one:
  // give it a share like a disk's (fio 4 KiB randwrite here: ~32k IOPS at 1%, ~55k at 20%). Unmount and fsync
  // still write everything.
  std::ofstream("/sys/class/bdi/" + dev + "/max_ratio") << kMaxDirtyRatio << "\n";
}

// syncfs through the mount (served by the still-running loop, so every dirty page reaches the cipher dir), then
// unmount. Lazy: at once, the kernel ends the connection once the last user is gone. Not lazy: refused (false)
// while the mount is in use: open files, a working directory inside.
bool write_back_and_unmount(const std::string& mountpoint, bool lazy) {
  if (int fd = ::open(mountpoint.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); fd >= 0) {
    ::syncfs(fd);
    ::close(fd);  // before the unmount: this descriptor alone would make the mount busy
  }
  if (::geteuid() == 0) return ::umount2(mountpoint.c_str(), lazy ? MNT_DETACH : 0) == 0;
  const char* lazy_argv[] = {"fusermount3", "-u", "-z", "--", mountpoint.c_str(), nullptr};
  const char* plain_argv[] = {"fusermount3", "-u", "-q", "--", mountpoint.c_str(), nullptr};
  pid_t pid;
  if (posix_spawnp(&pid, "fusermount3", nullptr, nullptr, const_cast<char* const*>(lazy ? lazy_argv : plain_argv),
                   environ) != 0)
    return false;
  int status = 0;
  return ::waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

// --idle: every tick (a tenth of the idle time, at most 10 s) looks whether a request came since the last one;
// after idle_ms without any, unmounts unless the mount is in use, then waits a whole idle period again.
class IdleUnmount {
 public:
  IdleUnmount(const std::atomic<uint64_t>* requests, std::string mountpoint, unsigned idle_ms)
      : requests_(requests), mountpoint_(std::move(mountpoint)), idle_(idle_ms) {
    if (idle_ms > 0 && requests_) thread_ = std::thread([this] { run(); });
  }
  ~IdleUnmount() { stop(); }
  void stop() {
    if (!thread_.joinable()) return;
    {
      std::lock_guard lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  void run() {
    using Clock = std::chrono::steady_clock;
    const auto tick = std::min(idle_ / 10, std::chrono::milliseconds(10'000));
    uint64_t seen = requests_->load(std::memory_order_relaxed);
    auto last_active = Clock::now();
    std::unique_lock lock(mu_);
    while (!cv_.wait_for(lock, tick, [this] { return done_; })) {
      const uint64_t now_seen = requests_->load(std::memory_order_relaxed);
      if (now_seen != seen) {
        seen = now_seen;
        last_active = Clock::now();
        continue;
      }
      if (Clock::now() - last_active < idle_) continue;
      lock.unlock();
      const bool gone = write_back_and_unmount(mountpoint_, /*lazy=*/false);
      lock.lock();
      if (gone) {
        log(LogLevel::Info, "idle for %lld s: unmounted",
            static_cast<long long>(std::chrono::duration_cast<std::chrono::seconds>(idle_).count()));
        return;
      }
      log(LogLevel::Info,
          "idle for %lld s, but the mount is in use (open files or a working directory inside): "
          "staying mounted",
          static_cast<long long>(std::chrono::duration_cast<std::chrono::seconds>(idle_).count()));
      seen = requests_->load(std::memory_order_relaxed);  // the syncfs was ours, not activity
      last_active = Clock::now();
    }
  }

  const std::atomic<uint64_t>* requests_;
  std::string mountpoint_;
  std::chrono::milliseconds idle_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

// SIGINT/SIGTERM/SIGHUP. libfuse's own handlers end the loop at once and unmount lazily, which drops what
// the writeback cache still holds for files that are open. Instead the signals are blocked in every thread
// (the loop's workers inherit the mask) and taken here: first syncfs, served by the still-running loop, so
// every dirty page reaches the cipher dir; then a lazy unmount, after which the kernel ends the connection
// and the loop returns once the last user is gone.
class ShutdownOnSignal {
 public:
  explicit ShutdownOnSignal(std::string mountpoint) : mountpoint_(std::move(mountpoint)) {
    sigemptyset(&set_);
    for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&set_, s);
    pthread_sigmask(SIG_BLOCK, &set_, nullptr);
    thread_ = std::thread([this] { run(); });
  }
  ~ShutdownOnSignal() { stop(); }
  // The loop has ended (unmounted from outside, or after a signal): wake the waiter and join it.
  void stop() {
    if (!thread_.joinable()) return;
    done_ = true;
    pthread_kill(thread_.native_handle(), SIGTERM);
    thread_.join();
  }

 private:
  void run() {
    int sig = 0;
    if (sigwait(&set_, &sig) != 0 || done_) return;
    log(LogLevel::Info, "signal %d: writing back and unmounting", sig);
    write_back_and_unmount(mountpoint_, /*lazy=*/true);
  }

  std::string mountpoint_;
  sigset_t set_;
  std::atomic<bool> done_{false};
  std::thread thread_;
};

struct ArgsGuard {
  fuse_args args = FUSE_ARGS_INIT(0, nullptr);
  ~ArgsGuard() { fuse_opt_free_args(&args); }
};

}  // namespace

int run_session(Fs& fs, const SessionOptions& opt) {
  Session session{&fs, &opt};
  return serve(lowlevel_ops(), &session, opt, &session.requests);
}

int serve(const fuse_lowlevel_ops& ops, void* userdata, const SessionOptions& opt,
          const std::atomic<uint64_t>* requests) {
  ArgsGuard a;
  fuse_opt_add_arg(&a.args, "veilfs");
  for (const auto& s : opt.fuse_args) fuse_opt_add_arg(&a.args, s.c_str());
  fuse_session* se = fuse_session_new(&a.args, &ops, sizeof(fuse_lowlevel_ops), userdata);
  if (!se) return cli::kExitMount;
  std::unique_ptr<fuse_session, void (*)(fuse_session*)> se_guard(se, fuse_session_destroy);
  if (fuse_set_signal_handlers(se) != 0) return cli::kExitMount;
  struct SignalGuard {
    fuse_session* se;
    ~SignalGuard() { fuse_remove_signal_handlers(se); }
  } sig{se};
  if (fuse_session_mount(se, opt.mountpoint.c_str()) != 0) return cli::kExitMount;
  struct MountGuard {
    fuse_session* se;
    ~MountGuard() { fuse_session_unmount(se); }
  } mnt{se};
  tune_bdi(opt.mountpoint);
  // Detach only now: a failed mount has been reported on stderr with a non-zero exit.
  if (!opt.foreground) {
    if (fuse_daemonize(0) != 0) return cli::kExitMount;
    set_log_targets(opt.detached_log);
  }
  ShutdownOnSignal shutdown(opt.mountpoint);
  IdleUnmount idle(requests, opt.mountpoint, opt.idle_ms);
  std::unique_ptr<fuse_loop_config, void (*)(fuse_loop_config*)> cfg(fuse_loop_cfg_create(), fuse_loop_cfg_destroy);
  fuse_loop_cfg_set_clone_fd(cfg.get(), 0);
  fuse_loop_cfg_set_max_threads(cfg.get(), 16);
  int rc = fuse_session_loop_mt(se, cfg.get());
  idle.stop();
  shutdown.stop();
  return rc == 0 ? cli::kExitOk : cli::kExitError;
}

}  // namespace veil::fuse
