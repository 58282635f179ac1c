#include "fuse/daemon.hpp"

#include <sys/resource.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "fuse/fs.hpp"
#include "fuse/log.hpp"
#include "fuse/ops.hpp"
#include "fuse/options.hpp"
#include "veilfs/cli/exit_codes.hpp"
#include "veilfs/crypto/secret.hpp"
#include "veilfs/util/error.hpp"

namespace veil::fuse {
namespace {

// Desktop sessions often start programs with a soft limit of 1,024; the fd cache is sized from this.
void raise_fd_limit() {
  struct rlimit rl {};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
}

bool is_directory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

int mount_body(int argc, char** argv) {
  MountOptions o;
  try {
    o = parse_command_line(argc, argv);
  } catch (const Error& e) {
    std::fprintf(stderr, "veilfs: %s\n", e.what());
    return cli::kExitUsage;
  }
  if (o.help) {
    std::fputs(usage_text().c_str(), stdout);
    return cli::kExitOk;
  }
  if (o.version) {
    std::printf("veilfs 0.1.0\n");
    return cli::kExitOk;
  }
  set_debug_logging(o.debug);
  raise_fd_limit();
  disable_core_dumps();
  if (auto why = memory_lock_problem(); !why.empty())
    log(LogLevel::Warning, "keys may be swapped out: %.*s", static_cast<int>(why.size()), why.data());
  if (!is_directory(o.mountpoint)) {
    std::fprintf(stderr, "veilfs: mountpoint %s is not a directory\n", o.mountpoint.c_str());
    return cli::kExitMount;
  }
  // Absolute paths: the daemon changes to / when it detaches, and unmounts by path on a signal.
  for (std::string* path : {&o.mountpoint, &o.cipherdir}) {
    if (char* real = ::realpath(path->c_str(), nullptr)) {
      *path = real;
      std::free(real);
    }
  }
  std::unique_ptr<Volume> vol;
  {
    SecretBytes secret = cli::read_secret(o.secret, "Passphrase: ");
    vol = Volume::open(o.cipherdir, secret.span());
  }
  Fs fs(std::move(vol), {}, {.shared_storage = o.shared_storage, .badname = o.badname});

  SessionOptions so;
  so.mountpoint = o.mountpoint;
  so.foreground = o.foreground;
  // fsname shows the cipher dir in mount(8) and df(1), as other stacked filesystems do.
  std::string fsname;
  for (char ch : o.cipherdir) {
    if (ch == ',' || ch == '\\') fsname.push_back('\\');
    fsname.push_back(ch);
  }
  std::string opts = "fsname=" + fsname + ",subtype=veilfs";
  if (o.allow_other) opts += ",allow_other,default_permissions";
  if (o.read_only) opts += ",ro";
  bool kernel_checks = o.allow_other;
  for (const auto& f : o.fuse_options) {
    opts += "," + f;
    kernel_checks = kernel_checks || f == "default_permissions";
  }
  so.shared_storage = o.shared_storage;
  // Shared storage needs the OPENs: each is where a file changed elsewhere is noticed (its pages dropped).
  so.no_open = (kernel_checks || ::geteuid() == 0) && !o.shared_storage;
  so.writeback_cache = !o.shared_storage;
  so.fuse_args = {"-o", opts};
  if (o.debug) so.fuse_args.push_back("-d");
  // Modes arrive with the caller's umask already applied; ours must not apply a second time.
  ::umask(0);
  return run_session(fs, so);
}

}  // namespace

int mount_main(int argc, char** argv) {
  return cli::run_guarded("veilfs", [&] { return mount_body(argc, argv); });
}

}  // namespace veil::fuse
