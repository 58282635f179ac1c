#include "harness.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace veiltest {
namespace {

using Clock = std::chrono::steady_clock;

int pidfd_open(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

// Waits until the process behind pidfd has exited or the timeout passes; true when it exited.
bool wait_readable(int fd, std::chrono::milliseconds timeout) {
  struct pollfd p {
    fd, POLLIN, 0
  };
  auto deadline = Clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    int r = ::poll(&p, 1, static_cast<int>(std::max<long long>(left, 0)));
    if (r > 0) return true;
    if (r == 0) return false;
    if (errno != EINTR) return false;
  }
}

int decode_status(int st) {
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
  return -1;
}

std::string env_or(const char* name, const char* fallback) {
  const char* v = ::getenv(name);
  return v && *v ? std::string(v) : std::string(fallback ? fallback : "");
}

// /proc/self/mountinfo escapes blanks and backslashes as octal.
std::string unescape_mountinfo(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      out.push_back(static_cast<char>(std::stoi(s.substr(i + 1, 3), nullptr, 8)));
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::string tail_of(const std::string& s, size_t n) { return s.size() <= n ? s : "..." + s.substr(s.size() - n); }

// A daemon log for a failure message: a sanitizer report is cut to its first frames and its summary, anything
// else to its tail.
std::string summarize_log(const std::string& log) {
  size_t err = log.find("ERROR: ");
  if (err == std::string::npos) err = log.find("runtime error:");
  if (err == std::string::npos) return tail_of(log, 3000);
  std::string out = log.substr(log.rfind('\n', err) == std::string::npos ? 0 : log.rfind('\n', err) + 1, 2500);
  size_t sum = log.rfind("SUMMARY: ");
  if (sum != std::string::npos && sum > err + 2500) out += "\n...\n" + log.substr(sum, log.find('\n', sum) - sum);
  return out;
}

std::atomic<int> g_log_counter{0};

std::string log_path_contents_or_empty(const std::string& p) {
  try {
    return read_file(p);
  } catch (const std::exception&) {
    return "";
  }
}

}  // namespace

std::string err_name(int e) {
  const char* n = strerrorname_np(e);
  return std::string(n ? n : "?") + " (" + std::to_string(e) + ", " + strerror(e) + ")";
}

RunResult run(const std::vector<std::string>& argv, const RunOptions& opt) {
  RunResult res;
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);

  // stdin comes from an unlinked temporary file so a large input can never deadlock against our reading.
  UniqueFd in;
  if (!opt.stdin_data.empty()) {
    std::string tmpl = test_tmpdir() + "/stdin-XXXXXX";
    in.reset(::mkstemp(tmpl.data()));
    if (!in) return res;
    ::unlink(tmpl.c_str());
    if (::write(in.get(), opt.stdin_data.data(), opt.stdin_data.size()) != static_cast<ssize_t>(opt.stdin_data.size()))
      return res;
    ::lseek(in.get(), 0, SEEK_SET);
  } else {
    in.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  }
  int pfd[2];
  if (::pipe2(pfd, O_CLOEXEC) != 0) return res;
  UniqueFd rd(pfd[0]), wr(pfd[1]);

  pid_t pid = ::fork();
  if (pid < 0) return res;
  if (pid == 0) {
    ::setpgid(0, 0);  // so a timeout can kill the whole pipeline
    ::dup2(in.get(), 0);
    ::dup2(wr.get(), 1);
    ::dup2(wr.get(), 2);
    if (!opt.cwd.empty() && ::chdir(opt.cwd.c_str()) != 0) _exit(126);
    ::execvp(cargv[0], cargv.data());
    _exit(127);
  }
  wr.reset();
  UniqueFd pidfd(pidfd_open(pid));
  auto deadline = Clock::now() + opt.timeout;
  bool exited = false;
  char buf[65536];
  // Read until the pipe closes; but a daemonizing child may leave a grandchild holding the pipe, so once the
  // direct child has exited, drain what is there and stop.
  for (;;) {
    struct pollfd p[2] = {{rd.get(), POLLIN, 0}, {pidfd.get(), POLLIN, 0}};
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      res.timed_out = true;
      break;
    }
    int r = ::poll(p, exited ? 1 : 2, exited ? 200 : static_cast<int>(left));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      if (exited) break;
      continue;
    }
    if (p[0].revents & (POLLIN | POLLHUP)) {
      ssize_t n = ::read(rd.get(), buf, sizeof buf);
      if (n > 0) {
        res.output.append(buf, static_cast<size_t>(n));
        continue;
      }
      if (n == 0) break;
    }
    if (!exited && (p[1].revents & POLLIN)) exited = true;
  }
  if (res.timed_out) {
    ::kill(-pid, SIGKILL);
    ::kill(pid, SIGKILL);
  }
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  res.status = decode_status(st);
  return res;
}

RunResult sh(const std::string& script, const RunOptions& opt) { return run({"/bin/sh", "-ec", script}, opt); }

std::string veilfs_binary() {
#ifdef VEILFS_BIN
  return env_or("VEILFS_BIN", VEILFS_BIN);
#else
  return env_or("VEILFS_BIN", nullptr);
#endif
}

std::string mkvol_binary() {
#ifdef VEILFS_MKVOL_BIN
  return env_or("VEILFS_MKVOL_BIN", VEILFS_MKVOL_BIN);
#else
  return env_or("VEILFS_MKVOL_BIN", nullptr);
#endif
}

std::string test_tmpdir() {
  static const std::string dir = [] {
    std::string d = env_or("VEILFS_TEST_TMPDIR", nullptr);
    if (d.empty()) d = env_or("TMPDIR", "/tmp");
    ::mkdir(d.c_str(), 0755);
    char* real = ::realpath(d.c_str(), nullptr);
    std::string r = real ? real : d;
    ::free(real);
    return r;
  }();
  return dir;
}

std::string fuse_unavailable_reason() {
  if (::access("/dev/fuse", R_OK | W_OK) != 0)
    return "/dev/fuse is missing or not accessible (" + err_name(errno) + "): mount tests cannot run here";
  if (run({"fusermount3", "-V"}).status != 0) return "fusermount3 is not installed: mount tests cannot run here";
  if (veilfs_binary().empty() || ::access(veilfs_binary().c_str(), X_OK) != 0)
    return "the veilfs daemon binary is not built (VEILFS_BIN='" + veilfs_binary() + "')";
  if (mkvol_binary().empty() || ::access(mkvol_binary().c_str(), X_OK) != 0)
    return "veilfs_test_mkvol is not built (VEILFS_MKVOL_BIN='" + mkvol_binary() + "')";
  return "";
}

void print_loud_skip(const std::string& reason) {
  static std::atomic<bool> printed{false};
  if (printed.exchange(true)) return;
  std::fprintf(stderr,
               "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
               "!!! veilfs MOUNT TESTS SKIPPED: %s\n"
               "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\n",
               reason.c_str());
}

bool is_mountpoint(const std::string& path) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string id, parent, devno, root, mp;
    ls >> id >> parent >> devno >> root >> mp;
    if (unescape_mountinfo(mp) == path) return true;
  }
  return false;
}

std::vector<pid_t> find_daemons(const std::string& mnt) {
  std::vector<pid_t> out;
  DIR* d = ::opendir("/proc");
  if (!d) return out;
  while (auto* e = ::readdir(d)) {
    pid_t pid = static_cast<pid_t>(std::atoi(e->d_name));
    if (pid <= 0) continue;
    std::ifstream in(std::string("/proc/") + e->d_name + "/cmdline", std::ios::binary);
    std::string cmd((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<std::string> args;
    for (size_t i = 0; i < cmd.size(); i += args.back().size() + 1) args.emplace_back(cmd.c_str() + i);
    if (args.empty()) continue;
    std::string argv0 = args[0].substr(args[0].rfind('/') == std::string::npos ? 0 : args[0].rfind('/') + 1);
    if (argv0 != "veilfs") continue;
    if (std::find(args.begin(), args.end(), mnt) != args.end()) out.push_back(pid);
  }
  ::closedir(d);
  return out;
}

bool wait_gone(pid_t pid, std::chrono::seconds limit) {
  UniqueFd fd(pidfd_open(pid));
  if (!fd) return errno == ESRCH;
  return wait_readable(fd.get(), limit);
}

// ---- TempDir ----

TempDir::TempDir(const std::string& prefix) {
  std::string tmpl = test_tmpdir() + "/" + prefix + "-XXXXXX";
  if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp " + tmpl + ": " + err_name(errno));
  // Traversable by everyone: the unprivileged-user tests reach the mountpoint through here.
  ::chmod(tmpl.c_str(), 0755);
  path_ = tmpl;
}

TempDir::~TempDir() {
  if (path_.empty() || !env_or("VEILFS_TEST_KEEP", "").empty()) return;
  // FTW_MOUNT: never descend into a mount that is somehow still there, never delete through it.
  ::nftw(
      path_.c_str(),
      [](const char* p, const struct stat*, int type, struct FTW*) {
        if (type == FTW_DP)
          ::rmdir(p);
        else
          ::unlink(p);
        return 0;
      },
      32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

// ---- VolumeDir ----

VolumeDir::VolumeDir(const std::string& prefix, const std::string& pass)
    : root(prefix),
      cipher(root.path() + "/cipher"),
      mnt(root.path() + "/mnt"),
      passfile(root.path() + "/pass"),
      passphrase(pass) {
  ::mkdir(cipher.c_str(), 0700);
  ::mkdir(mnt.c_str(), 0755);
  write_file(passfile, passphrase + "\n", 0600);
}

std::string VolumeDir::create(const std::string& cipher_name) {
  std::vector<std::string> argv{mkvol_binary(), cipher, passfile};
  if (!cipher_name.empty()) argv.push_back(cipher_name);
  auto r = run(argv);
  if (r.status != 0) return "veilfs_test_mkvol failed with status " + std::to_string(r.status) + ": " + r.output;
  return "";
}

DetachedMountGuard::~DetachedMountGuard() {
  for (const auto& mnt : mnts) {
    auto pids = find_daemons(mnt);
    if (is_mountpoint(mnt) && run({"fusermount3", "-u", mnt}).status != 0) run({"fusermount3", "-uz", mnt});
    for (pid_t p : pids)
      if (!wait_gone(p, std::chrono::seconds(20))) ::kill(p, SIGKILL);
  }
}

// ---- Mount ----

Mount::Mount(const VolumeDir& vol, const std::vector<std::string>& extra_args, unsigned long max_open_files)
    : mnt_(vol.mnt) {
  log_path_ = vol.root.path() + "/daemon-" + std::to_string(++g_log_counter) + ".log";
  std::vector<std::string> argv{veilfs_binary(), "-f", "--passfile", vol.passfile};
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  argv.push_back(vol.cipher);
  argv.push_back(vol.mnt);
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);

  UniqueFd logfd(::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  UniqueFd devnull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  pid_ = ::fork();
  if (pid_ < 0) {
    error_ = "fork: " + err_name(errno);
    return;
  }
  if (pid_ == 0) {
    // If the test process dies, the daemon gets SIGTERM and unmounts, instead of lingering.
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (max_open_files > 0) {
      struct rlimit rl {
        max_open_files, max_open_files
      };
      if (::setrlimit(RLIMIT_NOFILE, &rl) != 0) _exit(126);
    }
    ::dup2(devnull.get(), 0);
    ::dup2(logfd.get(), 1);
    ::dup2(logfd.get(), 2);
    ::execv(cargv[0], cargv.data());
    _exit(127);
  }
  pidfd_.reset(pidfd_open(pid_));
  // The foreground daemon has no "mounted" signal of its own: watch the mount table, or the daemon dying.
  auto deadline = Clock::now() + std::chrono::seconds(60);
  while (Clock::now() < deadline) {
    if (is_mountpoint(mnt_)) {
      mounted_ = true;
      return;
    }
    if (wait_readable(pidfd_.get(), std::chrono::milliseconds(5))) {
      int st = 0;
      ::waitpid(pid_, &st, 0);
      pid_ = -1;
      error_ = "veilfs exited with status " + std::to_string(decode_status(st)) + " before the mount appeared; log:\n" +
               log_path_contents_or_empty(log_path_);
      return;
    }
  }
  error_ = "the mount did not appear within 60 s; log:\n" + log();
}

std::string Mount::log() const { return log_path_contents_or_empty(log_path_); }

std::string Mount::wait_for_exit(std::chrono::seconds limit) {
  if (pid_ < 0) return "";
  std::string err;
  if (!wait_readable(pidfd_.get(), limit)) {
    ::kill(pid_, SIGKILL);
    err = "veilfs did not exit within " + std::to_string(limit.count()) + " s after unmount (killed); log:\n" +
          summarize_log(log());
  }
  int st = 0;
  while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
  if (err.empty() && decode_status(st) != 0)
    err = "veilfs exited with status " + std::to_string(decode_status(st)) + " after unmount; log:\n" +
          summarize_log(log());
  return err;
}

std::string Mount::unmount() {
  if (!mounted_) return wait_for_exit(std::chrono::seconds(20));
  RunResult r;
  // EBUSY right after a program closed its last file is normal for a moment (release is asynchronous).
  for (int i = 0; i < 100; ++i) {
    r = run({"fusermount3", "-u", mnt_});
    if (r.status == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (r.status != 0) return "fusermount3 -u " + mnt_ + " failed: " + r.output;
  mounted_ = false;
  return wait_for_exit(std::chrono::seconds(30));
}

std::string Mount::stop_with_signal(int sig) {
  if (pid_ < 0) return "the daemon is not running";
  ::kill(pid_, sig);
  std::string err = wait_for_exit(std::chrono::seconds(30));
  if (is_mountpoint(mnt_)) {
    err += " the mount is still there after the daemon exited";
  } else {
    mounted_ = false;
  }
  return err;
}

Mount::~Mount() {
  std::string err = unmount();
  if (mounted_) {
    // Still busy (a test failed with a descriptor open): detach lazily so nothing is left behind.
    run({"fusermount3", "-uz", mnt_});
    mounted_ = false;
    err += wait_for_exit(std::chrono::seconds(10));
  }
  if (!err.empty()) ADD_FAILURE() << "unmount: " << err;
}

// ---- Ledger ----

std::vector<std::string> Ledger::verify(const std::string& mnt) const {
  std::vector<std::string> bad;
  for (const auto& [rel, want] : files_) {
    try {
      std::string got = read_file(mnt + "/" + rel);
      std::string d = first_difference(got, want);
      if (!d.empty()) bad.push_back(rel + ": " + d);
    } catch (const std::exception& e) {
      bad.push_back(rel + ": " + e.what());
    }
  }
  return bad;
}

// ---- plaintext scanner ----

namespace {

void scan_bytes(const std::string& where, std::string_view data, const std::vector<std::string>& markers,
                std::vector<std::string>& out) {
  for (const auto& m : markers)
    if (data.find(m) != std::string_view::npos) out.push_back(where + " contains plaintext marker '" + m + "'");
}

void scan_xattrs(const std::string& p, const std::vector<std::string>& markers, std::vector<std::string>& out) {
  ssize_t n = ::llistxattr(p.c_str(), nullptr, 0);
  if (n <= 0) return;
  std::string names(static_cast<size_t>(n), '\0');
  n = ::llistxattr(p.c_str(), names.data(), names.size());
  if (n <= 0) return;
  names.resize(static_cast<size_t>(n));
  for (size_t i = 0; i < names.size();) {
    std::string name = names.c_str() + i;
    i += name.size() + 1;
    scan_bytes(p + " xattr name", name, markers, out);
    ssize_t vn = ::lgetxattr(p.c_str(), name.c_str(), nullptr, 0);
    if (vn <= 0) continue;
    std::string v(static_cast<size_t>(vn), '\0');
    vn = ::lgetxattr(p.c_str(), name.c_str(), v.data(), v.size());
    if (vn > 0) scan_bytes(p + " xattr value", std::string_view(v).substr(0, static_cast<size_t>(vn)), markers, out);
  }
}

// Reads only the data regions of a (possibly huge, sparse) backing file, in chunks that overlap by the longest
// marker so nothing straddling a chunk boundary is missed.
void scan_contents(const std::string& p, const std::vector<std::string>& markers, std::vector<std::string>& out) {
  UniqueFd fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    out.push_back(p + ": cannot open: " + err_name(errno));
    return;
  }
  size_t overlap = 0;
  for (const auto& m : markers) overlap = std::max(overlap, m.size());
  const size_t kChunk = 1 << 20;
  std::vector<std::string> found;
  off_t pos = 0;
  for (;;) {
    off_t data = ::lseek(fd.get(), pos, SEEK_DATA);
    if (data < 0) break;  // ENXIO: no more data
    off_t hole = ::lseek(fd.get(), data, SEEK_HOLE);
    if (hole < 0) hole = data + static_cast<off_t>(kChunk);
    for (off_t at = data; at < hole;) {
      size_t len = static_cast<size_t>(std::min<off_t>(hole - at, static_cast<off_t>(kChunk + overlap)));
      std::string chunk;
      try {
        chunk = read_fd_at(fd.get(), static_cast<uint64_t>(at), len);
      } catch (const std::exception& e) {
        out.push_back(p + ": " + e.what());
        return;
      }
      if (chunk.empty()) break;
      scan_bytes("contents of " + p, chunk, markers, found);
      if (!found.empty()) {
        out.push_back(found.front());
        return;
      }
      at += static_cast<off_t>(std::min(chunk.size(), kChunk));
      if (chunk.size() < len) break;
    }
    pos = hole;
  }
}

void scan_tree(const std::string& dir, const std::vector<std::string>& markers, std::vector<std::string>& out,
               size_t& entries) {
  std::vector<std::string> names;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (auto* e = ::readdir(d))
      if (std::string_view n = e->d_name; n != "." && n != "..") names.emplace_back(n);
    ::closedir(d);
  } else {
    out.push_back(dir + ": cannot list: " + err_name(errno));
    return;
  }
  for (const auto& n : names) {
    std::string p = dir + "/" + n;
    ++entries;
    scan_bytes("name " + p, n, markers, out);
    scan_xattrs(p, markers, out);
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      scan_tree(p, markers, out, entries);
    } else if (S_ISLNK(st.st_mode)) {
      char buf[8192];
      ssize_t k = ::readlink(p.c_str(), buf, sizeof buf);
      if (k > 0) scan_bytes("symlink target of " + p, std::string_view(buf, static_cast<size_t>(k)), markers, out);
    } else if (S_ISREG(st.st_mode)) {
      scan_contents(p, markers, out);
    }
  }
}

}  // namespace

std::vector<std::string> scan_for_plaintext(const std::string& dir, const std::vector<std::string>& markers) {
  std::vector<std::string> out;
  size_t entries = 0;
  scan_tree(dir, markers, out, entries);
  if (entries == 0) out.push_back(dir + " is empty: nothing was scanned");
  return out;
}

std::vector<std::string> scan_file_for_plaintext(const std::string& path, const std::vector<std::string>& markers) {
  std::vector<std::string> out;
  try {
    scan_bytes(path, read_file(path), markers, out);
  } catch (const std::exception& e) {
    out.push_back(e.what());
  }
  return out;
}

// ---- SuiteVolume ----

SuiteVolume::SuiteVolume(const std::string& name, std::vector<std::string> mount_args)
    : name_(name), args_(std::move(mount_args)), vol_(name) {
  skip_ = fuse_unavailable_reason();
  if (!skip_.empty()) return;
  setup_error_ = vol_.create();
  if (!setup_error_.empty()) return;
  mount_ = std::make_unique<Mount>(vol_, args_);
  if (!mount_->ok()) setup_error_ = "mount failed: " + mount_->error();
}

SuiteVolume::~SuiteVolume() {
  if (mount_) logs_.push_back(mount_->log_path());
  mount_.reset();
}

std::string SuiteVolume::remount() {
  std::string err;
  if (mount_) {
    err = mount_->unmount();
    logs_.push_back(mount_->log_path());
    mount_.reset();
  }
  mount_ = std::make_unique<Mount>(vol_, args_);
  if (!mount_->ok()) err += "remount failed: " + mount_->error();
  return err;
}

void SuiteVolume::finish() {
  if (finished_ || !skip_.empty() || !setup_error_.empty()) return;
  finished_ = true;
  auto t0 = Clock::now();
  std::string err = remount();
  auto t1 = Clock::now();
  // Go on after a reported error where possible: the ledger and the scan say more than the first failure.
  if (!err.empty()) ADD_FAILURE() << "[" << name_ << "] remount after all tests: " << err;
  std::vector<std::string> bad;
  if (mounted()) {
    bad = ledger_.verify(vol_.mnt);
    for (const auto& b : bad) ADD_FAILURE() << "[" << name_ << "] after remount: " << b;
  }
  if (mount_) {
    err = mount_->unmount();
    logs_.push_back(mount_->log_path());
    mount_.reset();
    if (!err.empty()) ADD_FAILURE() << "[" << name_ << "] final unmount: " << err;
  }
  auto t2 = Clock::now();
  auto leaks = scan_for_plaintext(vol_.cipher, markers_);
  for (const auto& l : leaks) ADD_FAILURE() << "[" << name_ << "] cipher dir: " << l;
  for (const auto& log : logs_)
    for (const auto& l : scan_file_for_plaintext(log, markers_)) ADD_FAILURE() << "[" << name_ << "] daemon log: " << l;
  auto ms = [](auto d) {
    return static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
  };
  std::fprintf(stderr,
               "[veilfs] %s: after remount %zu ledger files checked (%zu bad); cipher dir and %zu daemon logs "
               "scanned for %zu plaintext markers: %zu findings (remount %lld ms, verify+unmount %lld ms, scan %lld "
               "ms)\n",
               name_.c_str(), ledger_.size(), bad.size(), logs_.size(), markers_.size(), leaks.size(), ms(t1 - t0),
               ms(t2 - t1), ms(Clock::now() - t2));
}

// ---- file helpers ----

std::string read_file(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw std::runtime_error("open " + path + ": " + err_name(errno));
  std::string out;
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error("read " + path + ": " + err_name(errno));
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

void write_file(const std::string& path, const std::string& content, mode_t mode) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
  if (!fd) throw std::runtime_error("create " + path + ": " + err_name(errno));
  write_fd_at(fd.get(), 0, content);
}

std::string read_fd_at(int fd, uint64_t off, size_t len) {
  std::string out(len, '\0');
  size_t got = 0;
  while (got < len) {
    ssize_t n = ::pread(fd, out.data() + got, len - got, static_cast<off_t>(off + got));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error("pread at " + std::to_string(off + got) + ": " + err_name(errno));
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  out.resize(got);
  return out;
}

void write_fd_at(int fd, uint64_t off, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::pwrite(fd, data.data() + done, data.size() - done, static_cast<off_t>(off + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error("pwrite at " + std::to_string(off + done) + ": " + err_name(errno));
    }
    if (n == 0) throw std::runtime_error("pwrite wrote nothing");
    done += static_cast<size_t>(n);
  }
}

std::string marker_content(size_t n, uint64_t seed) {
  std::string out;
  out.reserve(n + 64);
  char line[128];
  for (uint64_t off = 0; out.size() < n; off += 64) {
    // 64-byte lines that name their offset: a block returned from the wrong place is visibly wrong.
    std::snprintf(line, sizeof line, "%s seed=%08llx off=%012llx ..........................................",
                  kContentMarker, static_cast<unsigned long long>(seed & 0xffffffff),
                  static_cast<unsigned long long>(off));
    line[63] = '\n';
    out.append(line, 64);
  }
  out.resize(n);
  return out;
}

std::string random_bytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string out(n, '\0');
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v = rng();
    std::memcpy(out.data() + i, &v, 8);
  }
  for (; i < n; ++i) out[i] = static_cast<char>(rng());
  return out;
}

std::string first_difference(const std::string& got, const std::string& want) {
  size_t n = std::min(got.size(), want.size());
  auto mm = std::mismatch(got.begin(), got.begin() + static_cast<std::ptrdiff_t>(n), want.begin());
  size_t i = static_cast<size_t>(mm.first - got.begin());
  if (i == n && got.size() == want.size()) return "";
  std::ostringstream s;
  s << "size " << got.size() << " (expected " << want.size() << ")";
  if (i < n) {
    size_t end = i;
    while (end < n && got[end] != want[end]) ++end;
    s << ", first differing byte at offset " << i << " (got 0x" << std::hex << (static_cast<unsigned>(got[i]) & 0xff)
      << ", expected 0x" << (static_cast<unsigned>(want[i]) & 0xff) << std::dec << "), differing run of " << (end - i)
      << " bytes";
  } else {
    s << ", equal over the common prefix";
  }
  return s.str();
}

std::vector<std::string> list_dir(const std::string& path) {
  std::vector<std::string> out;
  DIR* d = ::opendir(path.c_str());
  if (!d) throw std::runtime_error("opendir " + path + ": " + err_name(errno));
  while (auto* e = ::readdir(d))
    if (std::string_view n = e->d_name; n != "." && n != "..") out.emplace_back(n);
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace veiltest
