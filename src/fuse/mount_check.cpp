#include "fuse/mount_check.hpp"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>

#include "fuse/fuse_api.hpp"
#include "veilfs/cli/exit_codes.hpp"
#include "veilfs/util/io.hpp"
#include "veilfs/util/unique_fd.hpp"

namespace veil::fuse {

namespace {

struct MountEntry {
  std::string point, fstype, source;
};

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape(const std::string& s) {
  std::string out;
  auto octal = [&](size_t i) { return s[i] >= '0' && s[i] <= '7'; };
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && octal(i + 1) && octal(i + 2) && octal(i + 3)) {
      out.push_back(static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::vector<MountEntry> read_mounts() {
  std::vector<MountEntry> out;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::vector<std::string> f;
    for (std::string w; ls >> w;) f.push_back(w);
    // id parent major:minor root point options [optional fields...] - fstype source super-options
    size_t dash = 6;
    while (dash < f.size() && f[dash] != "-") ++dash;
    if (f.size() < 5 || dash + 2 >= f.size()) continue;
    out.push_back({unescape(f[4]), f[dash + 1], unescape(f[dash + 2])});
  }
  return out;
}

// The topmost mount whose mount point is exactly `path` (absolute, canonical).
std::optional<MountEntry> mount_at(const std::string& path) {
  std::optional<MountEntry> found;
  for (auto& m : read_mounts())
    if (m.point == path) found = m;
  return found;
}

// `path` made absolute without touching the filesystem (a dead mount cannot be resolved), "." and ".." folded.
std::string lexical_absolute(const std::string& path) {
  std::string full = path;
  if (path.empty() || path[0] != '/') {
    char* cwd = ::getcwd(nullptr, 0);
    full = std::string(cwd ? cwd : "") + "/" + path;
    std::free(cwd);
  }
  std::vector<std::string> parts;
  std::stringstream ss(full);
  for (std::string p; std::getline(ss, p, '/');) {
    if (p.empty() || p == ".") continue;
    if (p == "..") {
      if (!parts.empty()) parts.pop_back();
      continue;
    }
    parts.push_back(p);
  }
  std::string out;
  for (const auto& p : parts) out += "/" + p;
  return out.empty() ? "/" : out;
}

std::string dead_mount_message(const std::string& path) {
  // The dead mount is the path itself or the nearest mount above it.
  const std::string abs = lexical_absolute(path);
  std::string dead = path;
  size_t best = 0;
  for (const auto& m : read_mounts()) {
    const bool covers =
        abs == m.point || (abs.rfind(m.point, 0) == 0 && (m.point == "/" || abs[m.point.size()] == '/'));
    if (covers && m.point.size() >= best && m.fstype.rfind("fuse", 0) == 0) {
      best = m.point.size();
      dead = m.point == abs ? path : m.point;
    }
  }
  std::string where = dead == path ? "mountpoint " + path + " is a dead FUSE mount"
                                   : "mountpoint " + path + " is inside a dead FUSE mount (" + dead + ")";
  return where + " (Transport endpoint is not connected: its daemon has exited): run `fusermount3 -u " + dead +
         "`, then mount again";
}

std::string* g_fuse_log = nullptr;

void capture_fuse_log(enum fuse_log_level, const char* fmt, va_list ap) {
  char buf[1024];
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  if (g_fuse_log) *g_fuse_log += buf;
}

// What fuse_session_new says about args (empty when it accepts them). It only parses: nothing is opened.
std::string libfuse_refusal(const std::vector<std::string>& args) {
  fuse_args a = FUSE_ARGS_INIT(0, nullptr);
  fuse_opt_add_arg(&a, "veilfs");
  for (const auto& s : args) fuse_opt_add_arg(&a, s.c_str());
  fuse_lowlevel_ops ops{};
  std::string log;
  g_fuse_log = &log;
  fuse_set_log_func(capture_fuse_log);
  fuse_session* se = fuse_session_new(&a, &ops, sizeof ops, nullptr);
  fuse_set_log_func(nullptr);  // libfuse's default (stderr) again; the daemon installs its own later
  g_fuse_log = nullptr;
  fuse_opt_free_args(&a);
  if (se) {
    fuse_session_destroy(se);
    return "";
  }
  // "fuse: unknown option(s): `-o junk'\n" -> "unknown option(s): `-o junk'"
  while (!log.empty() && (log.back() == '\n' || log.back() == ' ')) log.pop_back();
  for (size_t p; (p = log.find("fuse: ")) != std::string::npos;) log.erase(p, 6);
  for (auto& c : log)
    if (c == '\n') c = ';';
  return log.empty() ? "refused by libfuse" : log;
}

}  // namespace

std::string mountpoint_problem(const std::string& path, bool allow_nonempty) {
  const std::string mp = "mountpoint " + path;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    const int err = errno;
    if (err == ENOTCONN) return dead_mount_message(path);
    if (err == ENOENT) {
      struct stat lst {};
      if (::lstat(path.c_str(), &lst) == 0 && S_ISLNK(lst.st_mode))
        return mp + " does not exist (a symlink to a missing directory)";
      return mp + " does not exist: create it first (mkdir " + path + ")";
    }
    return mp + ": " + std::strerror(err);
  }
  if (!S_ISDIR(st.st_mode)) return mp + " is not a directory";
  if (allow_nonempty) return "";

  if (char* real = ::realpath(path.c_str(), nullptr)) {
    const std::string canonical = real;
    std::free(real);
    if (auto m = mount_at(canonical))
      return mp + " is already a mount point (" + m->fstype + " of " + m->source +
             "): mounting there would stack on top of it. Unmount it first (fusermount3 -u " + path +
             ", or umount), or pass --nonempty to mount over it anyway";
  }
  UniqueFd dir(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir)
    return mp + ": cannot check that it is empty: " + std::strerror(errno) + " (pass --nonempty to skip the check)";
  size_t entries = 0;
  try {
    for_each_dir_entry(dir.get(), [&](std::string_view) {
      ++entries;
      return true;
    });
  } catch (const std::exception& e) {
    return mp + ": cannot check that it is empty: " + e.what();
  }
  if (entries > 0)
    return mp + " is not empty (" + std::to_string(entries) + (entries == 1 ? " entry" : " entries") +
           "): the mount would hide " + (entries == 1 ? "it" : "them") +
           ". Use an empty directory, or pass --nonempty (-o nonempty) to mount over " +
           (entries == 1 ? "it" : "them") + " anyway";
  return "";
}

std::string fuse_options_problem(const std::vector<std::string>& fuse_args,
                                 const std::vector<std::string>& user_options) {
  // libfuse accepts max_read=, but with the low-level API the daemon's INIT handler must repeat it, and ours does
  // not: libfuse then ends the session at the kernel's first request ("init() and fuse_session_new() requested
  // different maximum read size"), after a background veilfs has already reported success.
  for (const auto& opt : user_options)
    if (opt.rfind("max_read=", 0) == 0)
      return "-o " + opt + ": not supported by veilfs yet (the mount would end at once, at the kernel's INIT)";
  const std::string all = libfuse_refusal(fuse_args);
  if (all.empty()) return "";
  std::string bad;
  for (const auto& opt : user_options) {
    std::string why = libfuse_refusal({"-o", opt});
    if (why.empty()) continue;
    bad += (bad.empty() ? "" : "; ") + std::string("-o ") + opt + " (" + why + ")";
  }
  if (bad.empty()) return "mount options refused by libfuse: " + all;
  return "unknown or invalid mount option: " + bad + ". veilfs's own -o options are passfile=, extpass=, keyfile=, " +
         "allow_other, shared_storage, badname=, ro, rw, debug and nonempty; the rest are FUSE's (mount.fuse3(8))";
}

int remount_existing(const std::string& mountpoint, bool read_only) {
  char* real = ::realpath(mountpoint.c_str(), nullptr);
  const std::string path = real ? real : lexical_absolute(mountpoint);
  std::free(real);
  auto m = mount_at(path);
  if (!m || m->fstype != "fuse.veilfs") {
    std::fprintf(stderr, "veilfs: cannot remount %s: it is not a veilfs mount%s\n", mountpoint.c_str(),
                 m ? (" (it is " + m->fstype + ")").c_str() : "");
    return cli::kExitMount;
  }
  // Only the read-only flag changes; the daemon needs no word of it (the kernel refuses writes). A remount sets
  // the mount's other flags from what it is given, so they are given as they are (else nosuid and nodev would
  // silently go).
  struct statvfs sv {};
  if (::statvfs(path.c_str(), &sv) != 0) {
    std::fprintf(stderr, "veilfs: cannot remount %s: %s\n", mountpoint.c_str(), std::strerror(errno));
    return cli::kExitMount;
  }
  unsigned long flags = MS_REMOUNT | (read_only ? MS_RDONLY : 0);
  const std::pair<unsigned long, unsigned long> keep[] = {{ST_NOSUID, MS_NOSUID},         {ST_NODEV, MS_NODEV},
                                                          {ST_NOEXEC, MS_NOEXEC},         {ST_NOATIME, MS_NOATIME},
                                                          {ST_NODIRATIME, MS_NODIRATIME}, {ST_RELATIME, MS_RELATIME}};
  for (auto [st, ms] : keep)
    if (sv.f_flag & st) flags |= ms;
  if (::mount(nullptr, path.c_str(), nullptr, flags, nullptr) != 0) {
    const int err = errno;
    std::fprintf(stderr, "veilfs: cannot remount %s %s: %s%s\n", mountpoint.c_str(),
                 read_only ? "read-only" : "read-write", std::strerror(err),
                 err == EPERM ? " (remounting needs root: unmount with fusermount3 -u and mount again, with or "
                                "without --ro)"
                              : "");
    return cli::kExitMount;
  }
  return cli::kExitOk;
}

}  // namespace veil::fuse
