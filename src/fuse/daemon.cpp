#include "fuse/daemon.hpp"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "fuse/fs.hpp"
#include "fuse/fuse_api.hpp"
#include "fuse/log.hpp"
#include "fuse/mount_check.hpp"
#include "fuse/options.hpp"
#include "fuse/reverse_ops.hpp"
#include "fuse/session.hpp"
#include "veilfs/cli/cipher_dir.hpp"
#include "veilfs/cli/exit_codes.hpp"
#include "veilfs/cli/version.hpp"
#include "veilfs/crypto/secret.hpp"
#include "veilfs/format/recovery_code.hpp"
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
    std::fputs(cli::version_text("veilfs", fuse_pkgversion()).c_str(), stdout);
    return cli::kExitOk;
  }
  if (o.remount) return remount_existing(o.mountpoint, o.read_only);  // no daemon, no secret
  set_debug_logging(o.debug);
  LogTargets log_targets{.to_stderr = true, .to_syslog = o.syslog == MountOptions::Syslog::On, .log_fd = -1};
  if (!o.logfile.empty()) {
    // Opened now, before the KDF and the detach: a log file that cannot be written is said at once.
    log_targets.log_fd = ::open(o.logfile.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
    if (log_targets.log_fd < 0) {
      std::fprintf(stderr, "veilfs: %s: cannot open the log file: %s\n", o.logfile.c_str(), std::strerror(errno));
      return cli::kExitIo;
    }
  }
  set_log_targets(log_targets);
  raise_fd_limit();
  disable_core_dumps();

  // Absolute paths: the daemon changes to / when it detaches, and unmounts by path on a signal. Messages keep
  // the user's spelling.
  const std::string cipherdir_arg = o.cipherdir, mountpoint_arg = o.mountpoint;
  for (std::string* path : {&o.mountpoint, &o.cipherdir}) {
    if (char* real = ::realpath(path->c_str(), nullptr)) {
      *path = real;
      std::free(real);
    }
  }

  SessionOptions so;
  so.mountpoint = o.mountpoint;
  so.foreground = o.foreground;
  // fsname shows the cipher dir in mount(8) and df(1), as other stacked filesystems do.
  std::string fsname;
  for (char ch : o.cipherdir) {
    if (ch == ',' || ch == '\\') fsname.push_back('\\');
    fsname.push_back(ch);
  }
  if (o.reverse && o.config_file.empty()) o.config_file = o.cipherdir + "/" + std::string(reverse::kReverseConfigName);
  // Absolute too: the reverse view reads its config while serving, after the detach changed to /.
  if (char* real = o.config_file.empty() ? nullptr : ::realpath(o.config_file.c_str(), nullptr)) {
    o.config_file = real;
    std::free(real);
  }
  // Reverse: read-only at the kernel (every change is EROFS there), and the plain files' modes apply.
  std::string opts =
      "fsname=" + fsname + (o.reverse ? ",subtype=veilfs-reverse,ro,default_permissions" : ",subtype=veilfs");
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
  so.idle_ms = o.idle_ms;
  // Once detached: no stderr; the log file if given; syslog unless --no-syslog, or a log file without --syslog.
  so.detached_log = {.to_stderr = false,
                     .to_syslog = o.syslog == MountOptions::Syslog::On ||
                                  (o.syslog == MountOptions::Syslog::Auto && o.logfile.empty()),
                     .log_fd = log_targets.log_fd};
  if (o.debug) so.fuse_args.push_back("-d");

  // Everything that can be checked without the secret, before the (deliberately slow) KDF runs: the options,
  // the mountpoint, and that the cipher dir holds a volume this build can open.
  if (auto why = fuse_options_problem(so.fuse_args, o.fuse_options); !why.empty()) {
    std::fprintf(stderr, "veilfs: %s\n", why.c_str());
    return cli::kExitUsage;
  }
  reverse::Excludes excludes;  // read now: a bad pattern or file is a usage error before the KDF
  try {
    for (const auto& p : o.excludes) excludes.add(p);
    for (const auto& f : o.exclude_files) excludes.add_file(f);
  } catch (const Error& e) {
    std::fprintf(stderr, "veilfs: %s\n", e.what());
    return cli::kExitUsage;
  }
  if (auto why = mountpoint_problem(mountpoint_arg, o.nonempty); !why.empty()) {
    std::fprintf(stderr, "veilfs: %s\n", why.c_str());
    return cli::kExitMount;
  }
  if (o.recovery_code)
    cli::preflight_recovery(cipherdir_arg, o.config_file);
  else
    cli::preflight_volume(cipherdir_arg, o.config_file);
  if (auto why = memory_lock_problem(); !why.empty())
    log(LogLevel::Warning, "keys may be swapped out: %.*s", static_cast<int>(why.size()), why.data());

  std::unique_ptr<Volume> vol;
  {
    SecretBytes secret = cli::read_secret(o.secret, o.recovery_code ? "Recovery code: " : "Passphrase: ");
    try {
      if (o.recovery_code)
        vol = Volume::open_with_recovery(o.cipherdir, format::decode_recovery_code(secret.view()), o.config_file);
      else
        vol = Volume::open(o.cipherdir, secret.span(), o.config_file);
    } catch (const format::RecoveryCodeError&) {
      throw;  // exit 17 (run_guarded), the message naming the groups to retype
    } catch (const Error& e) {
      cli::rethrow_at(cipherdir_arg, e);
    }
  }
  int rc;
  if (o.reverse) {
    reverse::ReverseView view(*vol, o.config_file, std::move(excludes));
    rc = run_reverse_session(view, so);
  } else {
    Fs fs(std::move(vol), {}, {.shared_storage = o.shared_storage, .badname = o.badname});
    // Modes arrive with the caller's umask already applied; ours must not apply a second time.
    ::umask(0);
    rc = run_session(fs, so);
  }
  // libfuse has printed its reason ("fuse: mount failed: ..."); say what it was about.
  if (rc == cli::kExitMount)
    std::fprintf(stderr, "veilfs: mounting %s on %s failed (the reason from libfuse is above)\n", cipherdir_arg.c_str(),
                 mountpoint_arg.c_str());
  return rc;
}

}  // namespace

int mount_main(int argc, char** argv) {
  return cli::run_guarded("veilfs", [&] { return mount_body(argc, argv); });
}

}  // namespace veil::fuse
