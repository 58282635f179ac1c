#include "explorer.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <stdexcept>

#include "common/daemon_harness.hpp"
#include "veilfs/format/constants.hpp"
#include "veilfs/layout/cipher_dir.hpp"
#include "veilfs/util/error.hpp"

extern char** environ;

namespace veil::crash {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

[[noreturn]] void sys_fail(const std::string& what) { throw std::runtime_error(what + ": " + std::strerror(errno)); }

std::vector<std::string> split(const std::string& p) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i <= p.size()) {
    size_t j = p.find('/', i);
    if (j == std::string::npos) j = p.size();
    if (j > i) out.push_back(p.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

std::string short_name(const std::string& n) {
  if (n.size() <= 24) return n;
  return n.substr(0, 12) + "...(" + std::to_string(n.size()) + " chars)";
}

std::string display(const std::string& p) {
  std::string out;
  size_t i = 0;
  while (i <= p.size()) {
    size_t j = p.find('/', i);
    if (j == std::string::npos) j = p.size();
    if (j > i) out += "/" + short_name(p.substr(i, j - i));
    i = j + 1;
  }
  return out.empty() ? "/" : out;
}

uint64_t env_u64(const char* name, uint64_t dflt) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoull(v, nullptr, 10) : dflt;
}
bool env_flag(const char* name) {
  const char* v = std::getenv(name);
  return v && *v && std::string(v) != "0";
}

// The environment of a recorded process: ours plus the recorder's variables.
std::vector<std::string> recorded_env(const std::string& root, const std::string& log) {
  std::vector<std::string> env;
  std::string asan;
  for (char** e = environ; *e; ++e) {
    std::string s = *e;
    if (s.rfind("LD_PRELOAD=", 0) == 0 || s.rfind("VEILFS_CRASH_ROOT=", 0) == 0 || s.rfind("VEILFS_CRASH_LOG=", 0) == 0)
      continue;
    if (s.rfind("ASAN_OPTIONS=", 0) == 0) {
      asan = s.substr(13);
      continue;
    }
    env.push_back(s);
  }
  env.push_back(std::string("LD_PRELOAD=") + VEILFS_CRASH_RECORDER);
  env.push_back("VEILFS_CRASH_ROOT=" + root);
  env.push_back("VEILFS_CRASH_LOG=" + log);
  // An ASan build's runtime wants to be the first library; the recorder (built without it) comes first instead.
  if (daemon_harness::kSanitized || !asan.empty())
    env.push_back("ASAN_OPTIONS=" + asan + (asan.empty() ? "" : ":") + "verify_asan_link_order=0");
  return env;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void reset_dir(const std::string& d) {
  std::error_code ec;
  fs::remove_all(d, ec);
  if (::mkdir(d.c_str(), 0700) != 0) sys_fail("mkdir " + d);
}

std::string diff(const std::vector<std::string>& replayed, const std::vector<std::string>& real) {
  std::string out;
  std::set<std::string> a(replayed.begin(), replayed.end()), b(real.begin(), real.end());
  for (const auto& l : a)
    if (!b.count(l)) out += "  replay only: " + l + "\n";
  for (const auto& l : b)
    if (!a.count(l)) out += "  real only:   " + l + "\n";
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// Workload

Workload::Workload(std::string mnt, Expectations& e, uint64_t block, std::function<void(int, const std::string&)> mark)
    : mnt_(std::move(mnt)), e_(e), block_(block), mark_(std::move(mark)) {}

std::pair<int, std::string> Workload::parent_of(const std::string& p) const {
  auto parts = split(p);
  if (parts.empty()) throw std::runtime_error("no name in path '" + p + "'");
  int d = 0;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    d = e_.lookup(d, parts[i]);
    if (d == kNone) throw std::runtime_error("the workload has no directory " + parts[i] + " in " + p);
  }
  return {d, parts.back()};
}

int Workload::object(const std::string& p) const {
  if (split(p).empty()) return 0;
  auto [d, n] = parent_of(p);
  int o = e_.lookup(d, n);
  if (o == kNone) throw std::runtime_error("the workload has no " + p);
  return o;
}

const std::string& Workload::content(const std::string& p) const { return e_.content(object(p)); }

template <class F>
void Workload::step(const std::string& what, F&& f) {
  if (!setup_) e_.begin_step(what);
  f();
  if (!setup_) mark_(e_.step(), what);
}

namespace {
// An extending write or truncate may stop after the engine padded the old short final block with zeros to a
// whole block (ContentFile::write_locked, step "pad-old-final").
void allow_padding(Expectations& e, int obj, const std::string& old, size_t new_size, uint64_t block) {
  if (old.empty() || old.size() % block == 0) return;
  const size_t padded = std::min<size_t>((old.size() / block + 1) * block, new_size);
  if (padded == old.size() || padded == new_size) return;
  std::string pad = old;
  pad.resize(padded, '\0');
  e.allow(obj, std::move(pad));
}
}  // namespace

void Workload::create(const std::string& p) {
  step("create " + display(p), [&] {
    int fd = ::open(at(p).c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) sys_fail("create " + p);
    ::close(fd);
    auto [d, n] = parent_of(p);
    e_.make(d, n, S_IFREG, "");
  });
}

void Workload::write(const std::string& p, uint64_t off, const std::string& data) {
  step("write " + display(p) + " @" + std::to_string(off) + " +" + std::to_string(data.size()), [&] {
    int fd = ::open(at(p).c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) sys_fail("open " + p);
    size_t done = 0;
    while (done < data.size()) {
      ssize_t n = ::pwrite(fd, data.data() + done, data.size() - done, static_cast<off_t>(off + done));
      if (n <= 0) {
        ::close(fd);
        sys_fail("pwrite " + p);
      }
      done += static_cast<size_t>(n);
    }
    if (::close(fd) != 0) sys_fail("close " + p);
    const int o = object(p);
    const std::string old = e_.content(o);
    std::string now = old;
    if (now.size() < off + data.size()) now.resize(off + data.size(), '\0');
    std::copy(data.begin(), data.end(), now.begin() + static_cast<std::ptrdiff_t>(off));
    if (now.size() > old.size()) allow_padding(e_, o, old, now.size(), block_);
    e_.set_content(o, std::move(now));
  });
}

void Workload::append(const std::string& p, const std::string& data) { write(p, content(p).size(), data); }

void Workload::truncate(const std::string& p, uint64_t size) {
  step("truncate " + display(p) + " to " + std::to_string(size), [&] {
    if (::truncate(at(p).c_str(), static_cast<off_t>(size)) != 0) sys_fail("truncate " + p);
    const int o = object(p);
    const std::string old = e_.content(o);
    if (size < old.size() && size % block_ != 0 && size > block_) {
      // A shrink to a short final block ends the file at the block before it first (ContentFile::truncate).
      e_.allow(o, old.substr(0, size / block_ * block_));
    }
    if (size < old.size() && size < block_) e_.allow(o, "");  // the same for the first block: header only
    if (size > old.size()) allow_padding(e_, o, old, size, block_);
    std::string now = old;
    now.resize(size, '\0');
    e_.set_content(o, std::move(now));
  });
}

void Workload::open_trunc(const std::string& p) {
  step("open O_TRUNC " + display(p), [&] {
    int fd = ::open(at(p).c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
    if (fd < 0) sys_fail("open O_TRUNC " + p);
    ::close(fd);
    e_.set_content(object(p), "");
  });
}

void Workload::fsync(const std::string& p) {
  step("fsync " + display(p), [&] {
    const int o = object(p);
    const bool dir = e_.type(o) == S_IFDIR;
    int fd = ::open(at(p).c_str(), (dir ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
    if (fd < 0) sys_fail("open " + p);
    if (::fsync(fd) != 0) {
      ::close(fd);
      sys_fail("fsync " + p);
    }
    ::close(fd);
    e_.synced(o);
  });
}

void Workload::fdatasync(const std::string& p) {
  step("fdatasync " + display(p), [&] {
    const int o = object(p);
    int fd = ::open(at(p).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) sys_fail("open " + p);
    if (::fdatasync(fd) != 0) {
      ::close(fd);
      sys_fail("fdatasync " + p);
    }
    ::close(fd);
    e_.synced(o);
  });
}

void Workload::rename(const std::string& a, const std::string& b) {
  step("rename " + display(a) + " -> " + display(b), [&] {
    const int o = object(a);
    if (::rename(at(a).c_str(), at(b).c_str()) != 0) sys_fail("rename " + a + " " + b);
    auto [da, na] = parent_of(a);
    auto [db, nb] = parent_of(b);
    e_.bind(da, na, kNone);
    e_.bind(db, nb, o);
  });
}

void Workload::unlink(const std::string& p) {
  step("unlink " + display(p), [&] {
    if (::unlink(at(p).c_str()) != 0) sys_fail("unlink " + p);
    auto [d, n] = parent_of(p);
    e_.bind(d, n, kNone);
  });
}

void Workload::mkdir(const std::string& p) {
  step("mkdir " + display(p), [&] {
    if (::mkdir(at(p).c_str(), 0755) != 0) sys_fail("mkdir " + p);
    auto [d, n] = parent_of(p);
    e_.make(d, n, S_IFDIR);
  });
}

void Workload::rmdir(const std::string& p) {
  step("rmdir " + display(p), [&] {
    if (::rmdir(at(p).c_str()) != 0) sys_fail("rmdir " + p);
    auto [d, n] = parent_of(p);
    e_.bind(d, n, kNone);
  });
}

void Workload::rmdir_not_empty(const std::string& p) {
  step("rmdir " + display(p) + " (not empty: fails)", [&] {
    errno = 0;
    if (::rmdir(at(p).c_str()) == 0 || errno != ENOTEMPTY)
      throw std::runtime_error("rmdir of the non-empty " + p + " did not fail with ENOTEMPTY: " + std::strerror(errno));
  });
}

void Workload::symlink(const std::string& target, const std::string& p) {
  step("symlink " + display(p) + " -> " + short_name(target), [&] {
    if (::symlink(target.c_str(), at(p).c_str()) != 0) sys_fail("symlink " + p);
    auto [d, n] = parent_of(p);
    e_.make(d, n, S_IFLNK, target);
  });
}

void Workload::link(const std::string& a, const std::string& b) {
  step("link " + display(a) + " -> " + display(b), [&] {
    const int o = object(a);
    if (::link(at(a).c_str(), at(b).c_str()) != 0) sys_fail("link " + a + " " + b);
    auto [d, n] = parent_of(b);
    e_.bind(d, n, o);
  });
}

void Workload::put_durable(const std::string& p, const std::string& data) {
  create(p);
  if (!data.empty()) write(p, 0, data);
  fsync(p);
  auto parts = split(p);
  parts.pop_back();
  std::string dir;
  for (const auto& c : parts) dir += (dir.empty() ? "" : "/") + c;
  fsync(dir);
}

void Workload::baseline() {
  // Files first, then directories from the deepest up.
  std::vector<std::pair<std::string, int>> files, dirs;
  std::function<void(int, const std::string&)> rec = [&](int d, const std::string& path) {
    for (const auto& [name, o] : e_.entries(d)) {
      const std::string p = path.empty() ? name : path + "/" + name;
      if (e_.type(o) == S_IFDIR) {
        rec(o, p);
        dirs.emplace_back(p, o);
      } else if (e_.type(o) == S_IFREG) {
        files.emplace_back(p, o);
      }
    }
  };
  rec(0, "");
  dirs.emplace_back("", 0);
  for (const auto& [p, o] : files) fsync(p);
  for (const auto& [p, o] : dirs) fsync(p);
  e_.baseline();
  setup_ = false;
  mark_(0, "set-up done");
}

// ---------------------------------------------------------------------------------------------------------
// Explorer

Explorer::Explorer(const std::string& name) : name_(name) {
  scratch_ = std::make_unique<daemon_harness::Scratch>("crash-" + name, kPassphrase);
  vol_ = Volume::open(scratch_->cipher, daemon_harness::bytes_of(kPassphrase));
  block_ = vol_->config().block_size;
  log_path_ = scratch_->base + "/crash.log";
  log_fd_ = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (log_fd_ < 0) sys_fail("create " + log_path_);
  std::string tmpl =
      (::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : scratch_->base) + "/veilfs-crash-" + name + "-XXXXXX";
  if (!::mkdtemp(tmpl.data())) sys_fail("mkdtemp " + tmpl);
  work_ = tmpl;
}

Explorer::~Explorer() {
  daemon_.reset();
  if (log_fd_ >= 0) ::close(log_fd_);
  vol_.reset();
  std::error_code ec;
  if (env_flag("VEILFS_CRASH_KEEP")) {
    std::printf("[crash] kept %s and %s\n", scratch_->base.c_str(), work_.c_str());
    std::string keep = scratch_->base + ".kept";
    fs::rename(scratch_->base, keep, ec);
    fs::create_directories(scratch_->base, ec);
  } else {
    fs::remove_all(work_, ec);
  }
}

const std::string& Explorer::cipher() const { return scratch_->cipher; }
const std::string& Explorer::base() const { return scratch_->base; }
const std::string& Explorer::passfile() const { return scratch_->passfile; }

void Explorer::snapshot() { initial_ = scan_tree(scratch_->cipher); }

void Explorer::mark(int step, const std::string& what) {
  Record r;
  r.op = Op::Mark;
  r.pid = static_cast<uint64_t>(::getpid());
  r.off = static_cast<uint64_t>(step);
  r.call = what;
  std::string out;
  encode(r, out);
  if (::write(log_fd_, out.data(), out.size()) != static_cast<ssize_t>(out.size())) sys_fail("write mark");
}

Workload& Explorer::mount(bool record) {
  if (daemon_) throw std::runtime_error("already mounted");
  if (record && !initial_) snapshot();
  mounted_at_ = Clock::now();
  // The daemon inherits the environment when Daemon forks it: set the recorder's variables for that moment only.
  std::vector<std::pair<std::string, std::optional<std::string>>> saved;
  if (record) {
    for (const auto& kv : recorded_env(scratch_->cipher, log_path_)) {
      const std::string k = kv.substr(0, kv.find('='));
      if (k != "LD_PRELOAD" && k != "VEILFS_CRASH_ROOT" && k != "VEILFS_CRASH_LOG" && k != "ASAN_OPTIONS") continue;
      const char* old = std::getenv(k.c_str());
      saved.emplace_back(k, old ? std::optional<std::string>(old) : std::nullopt);
      ::setenv(k.c_str(), kv.substr(k.size() + 1).c_str(), 1);
    }
  }
  daemon_ = std::make_unique<daemon_harness::Daemon>(
      *scratch_, daemon_harness::DaemonLimits{std::chrono::seconds(30), std::chrono::seconds(60)});
  for (const auto& [k, v] : saved) {
    if (v)
      ::setenv(k.c_str(), v->c_str(), 1);
    else
      ::unsetenv(k.c_str());
  }
  if (!daemon_->ok()) throw std::runtime_error("veilfs did not mount: " + daemon_->log());
  if (!workload_)
    workload_ =
        std::make_unique<Workload>(scratch_->mnt, expect_, block_, [this](int s, const std::string& w) { mark(s, w); });
  return *workload_;
}

void Explorer::unmount() {
  if (!daemon_) return;
  int st = daemon_->unmount();
  const std::string log = daemon_->log();
  daemon_.reset();
  record_seconds_ += std::chrono::duration<double>(Clock::now() - mounted_at_).count();
  if (st != 0) throw std::runtime_error("veilfs exited with " + std::to_string(st) + ": " + log);
}

int Explorer::run_recorded_veilkey(const std::string& what, const std::vector<std::string>& args) {
  unmount();
  if (!initial_) snapshot();
  expect_.begin_step(what);
  std::vector<std::string> env = recorded_env(scratch_->cipher, log_path_);
  std::vector<char*> envp, argv;
  for (auto& s : env) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> a{"veilkey"};
  a.insert(a.end(), args.begin(), args.end());
  for (auto& s : a) argv.push_back(s.data());
  argv.push_back(nullptr);
  const std::string out = scratch_->base + "/veilkey.log";
  pid_t pid = ::fork();
  if (pid == 0) {
    int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    int devnull = ::open("/dev/null", O_RDONLY);
    ::dup2(devnull, 0);
    ::execve(VEILKEY_BIN, argv.data(), envp.data());
    ::_exit(127);
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  mark(expect_.step(), what);
  const int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  if (code != 0) std::printf("[crash] veilkey exited with %d:\n%s\n", code, read_file(out).c_str());
  return code;
}

void Explorer::set_open_rule(std::function<SecretBytes(const std::string&, int, std::vector<Violation>&)> rule) {
  open_rule_ = std::move(rule);
}

std::string Explorer::log_bytes() const { return read_file(log_path_); }

// --- naming: backing names back to the workload's plaintext names, for reports -----------------------------

std::string Explorer::label_path(const std::string& rel) const {
  // Backing name -> plaintext name, for every name the workload ever used (directory IVs as the mount made them).
  auto& labels = labels_;
  const auto all = expect_.all_names();
  if (labels_for_ != all.size()) {
    labels.clear();
    std::map<int, DirIv> ivs{{0, vol_->root_iv()}};
    std::function<DirIv(int)> iv = [&](int o) -> DirIv {
      if (auto it = ivs.find(o); it != ivs.end()) return it->second;
      const DirIv p = iv(expect_.parent_at_creation(o));
      DirIv v = vol_->names().derive_child_iv(p, vol_->names().encrypt(p, expect_.name_at_creation(o)));
      ivs[o] = v;
      return v;
    };
    for (const auto& [dir, name] : all) {
      if (expect_.type(dir) != S_IFDIR) continue;
      try {
        labels[layout::backing_name(vol_->names().encrypt(iv(dir), name))] = short_name(name);
      } catch (const std::exception&) {
      }
    }
    labels_for_ = all.size();
  }
  auto one = [&](const std::string& c) -> std::string {
    if (auto it = labels.find(c); it != labels.end()) return it->second;
    if (c == format::kConfigName) return "[config]";
    if (c == format::kDirIvName) return "[IV file]";
    if (layout::is_temp_file(c)) {
      const std::string owner = c.substr(0, c.rfind(".tmp."));
      auto it = labels.find(owner);
      return (it != labels.end()             ? it->second
              : owner == format::kConfigName ? "[config]"
              : owner == format::kDirIvName  ? "[IV file]"
                                             : owner) +
             " [temp file]";
    }
    if (c.size() > format::kLongNameSuffix.size() && c.ends_with(format::kLongNameSuffix)) {
      auto it = labels.find(c.substr(0, c.size() - format::kLongNameSuffix.size()));
      if (it != labels.end()) return it->second + " [name sidecar]";
    }
    if (c.rfind(format::kLongLinkPrefix, 0) == 0) {
      auto it = labels.find(c.substr(format::kLongLinkPrefix.size()));
      if (it != labels.end()) return it->second + " [link sidecar]";
    }
    return c.size() > 16 ? c.substr(0, 12) + "..." : c;
  };
  std::string out;
  for (const auto& c : split(rel)) out += "/" + one(c);
  return out.empty() ? "/" : out;
}

std::string Explorer::describe_op(size_t index, const Log& log) const {
  const Record& r = log.ops[index].rec;
  std::string s = "#" + std::to_string(index) + " ";
  switch (r.op) {
    case Op::Create: {
      const mode_t t = static_cast<mode_t>(r.mode) & S_IFMT;
      s += r.call + " " + label_path(r.path) +
           (t == S_IFDIR   ? " (new directory)"
            : t == S_IFLNK ? " (new symlink)"
                           : " (new file)");
      break;
    }
    case Op::Link:
      s += r.call + " new name " + label_path(r.path);
      break;
    case Op::Unlink:
      s += r.call + " " + label_path(r.path) + ((r.flags & kRemoveDir) ? " (rmdir)" : "");
      break;
    case Op::Rename:
      s += r.call + " " + label_path(r.path) + " -> " + label_path(r.path2) + (r.ino2 ? " (replacing)" : "");
      break;
    case Op::Write:
      s += r.call + " " + label_path(r.path) + " @" + std::to_string(r.off) + " +" + std::to_string(r.data.size());
      break;
    case Op::Truncate:
      s += r.call + " " + label_path(r.path) + " to " + std::to_string(r.off);
      break;
    case Op::Falloc:
      s += r.call + " " + label_path(r.path) + " mode " + std::to_string(r.flags) + " @" + std::to_string(r.off) +
           " +" + std::to_string(r.len);
      break;
    case Op::Fsync:
      s += r.call + " " + label_path(r.path) + (r.is_dir ? " (directory)" : "");
      break;
    case Op::Syncfs:
      s += r.call;
      break;
    case Op::Chmod: {
      char m[16];
      std::snprintf(m, sizeof m, "%04o", static_cast<unsigned>(r.mode));
      s += r.call + " " + label_path(r.path) + " " + m;
      break;
    }
    case Op::Mark:
      s += "-- step " + std::to_string(r.off) + " returned: " + r.call;
      break;
  }
  return s;
}

std::string Explorer::op_kind(size_t index, const Log& log) const {
  const Record& r = log.ops[index].rec;
  const std::string label = label_path(r.path);
  std::string what;
  if (auto b = label.rfind('['); b != std::string::npos && label.back() == ']')
    what = "of the " + label.substr(b + 1, label.size() - b - 2);
  switch (r.op) {
    case Op::Create: {
      const mode_t t = static_cast<mode_t>(r.mode) & S_IFMT;
      return "creation " + (what.empty() ? std::string(t == S_IFDIR   ? "of a directory"
                                                       : t == S_IFLNK ? "of a symlink"
                                                                      : "of a file")
                                         : what);
    }
    case Op::Link:
      return "new hard link";
    case Op::Unlink:
      return (r.flags & kRemoveDir) ? "rmdir" : "unlink " + (what.empty() ? "of an entry" : what);
    case Op::Rename:
      return "rename " + (what.empty() ? "of an entry" : what);
    case Op::Write:
      return "write " + (what.empty() ? "of file contents" : what);
    case Op::Truncate:
      return "truncate " + (what.empty() ? "of a file" : what) + (r.off == 0 ? " to 0" : "");
    case Op::Falloc:
      return "fallocate";
    case Op::Chmod:
      return "chmod";
    case Op::Fsync:
      return r.is_dir ? "fsync of a directory" : "fsync of a file";
    case Op::Syncfs:
      return "syncfs";
    case Op::Mark:
      break;
  }
  return "a step's end";
}

// --- exploring ------------------------------------------------------------------------------------------------

Result Explorer::explore() {
  unmount();
  return explore_log(log_bytes());
}

std::vector<Violation> Explorer::check_now(const std::string& dir_in) {
  unmount();
  const std::string dir = dir_in.empty() ? scratch_->cipher : dir_in;
  CheckSetup setup;
  setup.expect = &expect_;
  setup.master = vol_->master_key().clone();
  setup.block = block_;
  setup.open_volume = open_rule_;
  const std::string copy = work_ + "/copy";
  return check_state(dir, expect_.step(), setup, [&] {
    reset_dir(copy);
    materialize(scan_tree(dir), copy);
    return copy;
  });
}

std::string Explorer::copy_cipher(const std::string& name) {
  unmount();
  const std::string d = scratch_->base + "/" + name;
  reset_dir(d);
  materialize(scan_tree(scratch_->cipher), d);
  return d;
}

std::function<SecretBytes(const std::string&, int, std::vector<Violation>&)> passphrase_rule(std::string old_pass,
                                                                                             std::string new_pass,
                                                                                             bool replaces, int step) {
  return [=](const std::string& dir, int m, std::vector<Violation>& out) -> SecretBytes {
    auto try_open = [&](const std::string& pass) -> std::unique_ptr<Volume> {
      try {
        return Volume::open(dir, daemon_harness::bytes_of(pass));
      } catch (const Error&) {
        return nullptr;
      }
    };
    auto old_v = try_open(old_pass), new_v = try_open(new_pass);
    if (!old_v && !new_v) {
      out.emplace_back("SECRET", "/", "neither the old nor the new passphrase opens");
      return {};
    }
    if (m >= step && !new_v) out.emplace_back("SECRET", "/", "veilkey returned, but the new passphrase does not open");
    if (m >= step && replaces && old_v)
      out.emplace_back("SECRET", "/", "veilkey returned, but the old passphrase still opens");
    if (!replaces && !old_v) out.emplace_back("SECRET", "/", "the old passphrase no longer opens");
    return (old_v ? old_v : new_v)->master_key().clone();
  };
}

Result Explorer::explore_log(const std::string& bytes) {
  Result r;
  r.name = name_;
  r.record_seconds = record_seconds_;
  const auto t0 = Clock::now();
  if (!initial_) {
    r.fatal.push_back("no snapshot: nothing was recorded");
    return r;
  }
  Log log;
  try {
    log = parse_log(*initial_, bytes, 0, tear_ ? tear_ : env_u64("VEILFS_CRASH_TEAR", 0));
  } catch (const std::exception& x) {
    r.fatal.push_back(std::string("the log does not replay: ") + x.what());
    return r;
  }
  const size_t n = log.ops.size();
  for (const auto& op : log.ops) r.ops += op.rec.op == Op::Mark ? 0 : 1;
  if (env_flag("VEILFS_CRASH_DUMP")) {
    const auto forced = forced_at(log);
    for (size_t i = 0; i < n; ++i)
      std::printf(
          "[crash] %s %s%s\n", i < log.baseline ? "set-up" : "      ", describe_op(i, log).c_str(),
          log.ops[i].changes_state() && i >= log.baseline
              ? (forced[i] < n ? ("   (on disk from #" + std::to_string(forced[i]) + ")").c_str() : "   (never forced)")
              : "");
  }

  // The recorder saw everything: the whole log replayed is the cipher dir as the run left it.
  const Tree replayed = build_state(log, CrashState{n, {}, log.last_step, CrashState::Kind::Prefix});
  const std::string d = diff(describe(replayed), describe(scan_tree(scratch_->cipher)));
  if (!d.empty())
    r.fatal.push_back(
        "replaying the whole log does not give the cipher dir the run left (a system call the recorder missed?):\n" +
        d);

  ExploreLimits lim;
  lim.max_states = env_u64("VEILFS_CRASH_MAX_STATES", 3000);
  lim.random_subsets = env_u64("VEILFS_CRASH_SUBSETS", 400);
  lim.seed = env_u64("VEILFS_CRASH_SEED", 1);
  const auto states = crash_states(log, lim, &r.candidates);
  r.checked = states.size();

  CheckSetup setup;
  setup.expect = &expect_;
  setup.master = vol_->master_key().clone();
  setup.block = block_;
  setup.open_volume = open_rule_;
  const std::string dir = work_ + "/state", copy = work_ + "/copy";

  // Every state is judged once: (tree, last Mark) -> violations.
  std::map<std::pair<uint64_t, int>, std::vector<Violation>> judged;
  auto judge = [&](const CrashState& s) -> const std::vector<Violation>& {
    const Tree t = build_state(log, s);
    const auto key = std::make_pair(tree_hash(t), s.step);
    if (auto it = judged.find(key); it != judged.end()) return it->second;
    reset_dir(dir);
    materialize(t, dir);
    auto v = check_state(dir, s.step, setup, [&] {
      reset_dir(copy);
      materialize(t, copy);
      return copy;
    });
    return judged.emplace(key, std::move(v)).first->second;
  };

  struct Group {
    Finding f;
    CrashState example;
    std::vector<Violation> seen;  // the example's violations (those its losses add to the cut's)
    std::set<std::string> rules;
  };
  std::map<std::string, Group> groups;
  std::vector<std::string> order;
  for (const auto& x : states) {
    if (judge(x.state).empty()) continue;
    if (x.state.kind == CrashState::Kind::Prefix && x.state.crash_at == n) {
      std::string lines;
      for (const auto& e : judge(x.state)) lines += "  " + e.line() + "\n";
      r.fatal.push_back("the state the run left (every operation on disk) breaks the workload's expectations:\n" +
                        lines);
      continue;
    }
    ++r.violating;
    // Minimal: what the violations need. Those the cut alone (nothing lost) gives belong to the cut; the rest to
    // a single lost operation that alone gives them if there is one, else to the set without every lost
    // operation they do not need.
    auto vkey = [](const Violation& e) { return e.rule + (e.kind.empty() ? "" : "(" + e.kind + ")") + " " + e.path; };
    CrashState cut = x.state;
    cut.dropped.clear();
    cut.kind = CrashState::Kind::Prefix;
    std::set<std::string> of_cut;
    for (const auto& e : judge(cut)) of_cut.insert(vkey(e));
    auto extra = [&](const CrashState& t) {
      std::vector<Violation> out;
      for (const auto& e : judge(t))
        if (!of_cut.count(vkey(e))) out.push_back(e);
      return out;
    };
    CrashState s = x.state;
    if (extra(s).empty()) {
      s = cut;
    } else {
      bool single = false;
      for (size_t k = 0; k < x.state.dropped.size() && x.state.dropped.size() > 1 && !single; ++k) {
        CrashState t = x.state;
        t.dropped = {x.state.dropped[k]};
        if (!extra(t).empty()) {
          s = std::move(t);
          single = true;
        }
      }
      for (size_t k = 0; !single && k < s.dropped.size();) {
        CrashState t = s;
        t.dropped.erase(t.dropped.begin() + static_cast<std::ptrdiff_t>(k));
        if (!t.dropped.empty() && !extra(t).empty())
          s = std::move(t);
        else
          ++k;
      }
      if (s.dropped.size() == 1) s.kind = CrashState::Kind::DropOne;
    }
    const std::vector<Violation> seen = s.dropped.empty() ? judge(s) : extra(s);
    // One finding per set of lost operations, or for a cut without losses, per last operation before the cut.
    std::string key;
    if (s.dropped.empty()) {
      size_t last = s.crash_at;
      while (last > 0 && log.ops[last - 1].rec.op == Op::Mark) --last;
      key = "cut after " + std::to_string(last);
    } else {
      key = "lost";
      for (size_t j : s.dropped) key += " " + std::to_string(j);
    }
    auto [it, fresh] = groups.try_emplace(key);
    Group& g = it->second;
    ++g.f.states;
    for (const auto& e : seen) g.rules.insert(vkey(e));
    if (fresh || s.crash_at < g.example.crash_at) {
      g.example = s;
      g.seen = seen;
    }
    if (fresh) order.push_back(key);
  }

  auto cut_of = [](CrashState t) {
    t.dropped.clear();
    t.kind = CrashState::Kind::Prefix;
    return t;
  };
  // Classes: findings that differ only in which file or step, by the kind of operation lost (or cut after) and
  // the kinds of rules broken.
  std::map<std::string, std::vector<size_t>> classes;
  for (const auto& key : order) {
    Group& g = groups[key];
    const CrashState& s = g.example;
    const size_t crash = s.crash_at;
    const std::string in_progress = s.step >= log.last_step ? "after the last step"
                                                            : "step " + std::to_string(s.step + 1) + " '" +
                                                                  expect_.step_name(s.step + 1) + "' in progress";
    std::string how, cls;
    if (s.dropped.empty()) {
      size_t last = crash;
      while (last > 0 && log.ops[last - 1].rec.op == Op::Mark) --last;
      how = "crash right after " + describe_op(last - 1, log) + " (" + in_progress + ")";
      cls = "crash right after " + op_kind(last - 1, log);
    } else {
      std::string lost, kinds;
      for (size_t j : s.dropped) {
        lost +=
            (lost.empty() ? "" : ", ") + describe_op(j, log) + " [step " + std::to_string(log.ops[j].step + 1) + "]";
        kinds += (kinds.empty() ? "" : " + ") + op_kind(j, log);
      }
      how = "lost " + lost + "; crash after #" + std::to_string(crash - 1) + " (" + in_progress + ")";
      cls = "lost " + kinds;
    }
    std::string rule_text, rule_kinds;
    std::set<std::string> kinds_seen;
    for (const auto& x : g.rules) {
      rule_text += (rule_text.empty() ? "" : "; ") + x;
      const std::string k = x.substr(0, x.find(' '));
      if (kinds_seen.insert(k).second) rule_kinds += (rule_kinds.empty() ? "" : ", ") + k;
    }
    g.f.summary = how + " => " + rule_text;
    g.f.cls = cls + " => " + rule_kinds;
    classes[g.f.cls].push_back(r.findings.size());

    const size_t first_involved = s.dropped.empty() ? crash - 1 : s.dropped.front();
    size_t start = first_involved;
    while (start > log.baseline && log.ops[start - 1].rec.op != Op::Mark) --start;
    std::string ex;
    const std::set<size_t> lost(s.dropped.begin(), s.dropped.end());
    bool elided = false;
    for (size_t i = start; i < crash; ++i) {
      if (!lost.count(i) && i + 20 < crash && i >= start + 10) {
        if (!elided) ex += "        ...\n";
        elided = true;
        continue;
      }
      ex += std::string(lost.count(i) ? "    LOST " : "         ") + describe_op(i, log) + "\n";
    }
    ex += "        -- power cut: on disk are the operations above" +
          std::string(lost.empty() ? "" : " except the LOST ones") + ", and everything before them --\n";
    if (!s.dropped.empty() && !judge(cut_of(s)).empty())
      ex += "        (violations the cut alone also gives are left out: see that finding)\n";
    for (const auto& e : g.seen) ex += "        " + e.line() + "\n";
    g.f.example = ex;
    r.findings.push_back(g.f);
  }
  for (const auto& [cls, idx] : classes) {
    std::string list;
    size_t states_n = 0;
    for (size_t i : idx) {
      list += (list.empty() ? "" : ", ") + std::to_string(i + 1);
      states_n += r.findings[i].states;
    }
    r.classes.push_back(cls + "  [findings " + list + "; " + std::to_string(states_n) + " states]");
  }
  r.explore_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return r;
}

std::string Result::summary() const {
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "%s: %zu operations, %zu distinct crash states, %zu checked, %zu violating (%zu findings)",
                name.c_str(), ops, candidates, checked, violating, findings.size());
  return buf;
}

bool conclude(const Result& r, bool known) {
  const bool strict = env_flag("VEILFS_CRASH_STRICT");
  char times[96];
  std::snprintf(times, sizeof times, "; recorded in %.2f s, explored in %.2f s\n", r.record_seconds, r.explore_seconds);
  std::string out = "[crash] " + r.summary() + times;
  const size_t full = env_flag("VEILFS_CRASH_VERBOSE") ? r.findings.size() : 6;
  for (size_t i = 0; i < r.classes.size(); ++i)
    out += "[crash] class " + std::to_string(i + 1) + ": " + r.classes[i] + "\n";
  for (size_t i = 0; i < r.findings.size(); ++i) {
    const Finding& f = r.findings[i];
    out +=
        "[crash] finding " + std::to_string(i + 1) + " (" + std::to_string(f.states) + " states): " + f.summary + "\n";
    if (i < full) out += f.example;
  }
  if (r.findings.size() > full) out += "[crash] (VEILFS_CRASH_VERBOSE=1 shows every finding's operations)\n";
  std::fputs(out.c_str(), stdout);
  std::fflush(stdout);
  {
    std::ofstream rep("crash-" + r.name + ".txt");
    rep << out;
  }
  for (const auto& f : r.fatal) ADD_FAILURE() << "crash explorer: " << f;
  if (!r.fatal.empty()) return false;
  if (r.findings.empty()) {
    if (known)
      std::printf("[crash] %s: no violations any more: remove it from the known failures (tests/crash/README.md)\n",
                  r.name.c_str());
    return false;
  }
  if (strict || !known) {
    ADD_FAILURE() << r.name << ": " << r.violating << " crash states break the rules (findings above)";
    return false;
  }
  std::printf("[crash] %s: KNOWN VIOLATIONS (tests/crash/README.md); skipped. VEILFS_CRASH_STRICT=1 fails instead.\n",
              r.name.c_str());
  return true;
}

}  // namespace veil::crash
