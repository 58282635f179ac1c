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

#include <atomic>
#include <cstring>
#include <fstream>
#include <memory>
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
    if (int fd = ::open(mountpoint_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); fd >= 0) {
      ::syncfs(fd);
      ::close(fd);
    }
    if (::geteuid() == 0) {
      ::umount2(mountpoint_.c_str(), MNT_DETACH);
    } else {
      const char* argv[] = {"fusermount3", "-u", "-z", "--", mountpoint_.c_str(), nullptr};
      pid_t pid;
      if (posix_spawnp(&pid, "fusermount3", nullptr, nullptr, const_cast<char* const*>(argv), environ) == 0)
        ::waitpid(pid, nullptr, 0);
    }
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
  ArgsGuard a;
  fuse_opt_add_arg(&a.args, "veilfs");
  for (const auto& s : opt.fuse_args) fuse_opt_add_arg(&a.args, s.c_str());
  Session session{&fs, &opt};
  fuse_session* se = fuse_session_new(&a.args, &lowlevel_ops(), sizeof(fuse_lowlevel_ops), &session);
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
    log_to_syslog();
  }
  ShutdownOnSignal shutdown(opt.mountpoint);
  std::unique_ptr<fuse_loop_config, void (*)(fuse_loop_config*)> cfg(fuse_loop_cfg_create(), fuse_loop_cfg_destroy);
  fuse_loop_cfg_set_clone_fd(cfg.get(), 0);
  fuse_loop_cfg_set_max_threads(cfg.get(), 16);
  int rc = fuse_session_loop_mt(se, cfg.get());
  shutdown.stop();
  return rc == 0 ? cli::kExitOk : cli::kExitError;
}

}  // namespace veil::fuse
