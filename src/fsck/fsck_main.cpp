#include "fsck/fsck_main.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <iostream>

#include "fsck/checker.hpp"
#include "veilfs/cli/cipher_dir.hpp"
#include "veilfs/cli/exit_codes.hpp"
#include "veilfs/cli/secret_options.hpp"
#include "veilfs/cli/secret_source.hpp"
#include "veilfs/crypto/secret.hpp"

namespace veil::fsck {

namespace po = boost::program_options;

namespace {

constexpr const char* kUsage =
    "Usage: veilfs fsck CIPHERDIR [options]\n"
    "Checks a veilfs cipher dir without mounting it: the config, every directory IV, every name, long-name\n"
    "sidecar, file header, block (including the final-block marker), symlink target and extended attribute.\n"
    "Nothing is modified unless --repair is given.\n\n"
    "Exit codes: 0 clean (or everything found was repaired), 26 damage found, 13 config corrupt or tampered\n"
    "with, 10 wrong passphrase or key file, 11 not a volume (or no such directory), 12 unsupported format,\n"
    "14 I/O error, 2 usage (also conflicting or unusable --passfile/--extpass/--keyfile).\n\n"
    "Each problem is one line on stdout, \"KIND PATH: DETAIL\", PATH being the plain path where names decrypt:\n"
    "  config-corrupt, temp-leftover*, dir-iv-missing, dir-iv-bad, name-undecryptable, foreign-entry,\n"
    "  sidecar-missing, sidecar-bad, sidecar-orphaned, link-target-bad, header-bad, truncated, blocks-bad,\n"
    "  xattr-bad, xattr-foreign, too-deep, io-error, and the notices conflict-copy, dir-iv-shared, sync-file.\n"
    "--repair fixes what an interrupted operation or a power cut leaves, never by making up data: temp-leftover\n"
    "[removed]; dir-iv-missing and dir-iv-bad [written] where the names prove the IV; truncated [repaired] (a\n"
    "header-only file emptied, an end re-sealed where every block authenticates); sidecar-bad [renamed] (the\n"
    "entry named veilfs-lost-name-...); sidecar-orphaned only with --delete-orphans; conflict copies with\n"
    "--rename-conflicts. A block that fails authentication is never rewritten.\n\n"
    "Examples:\n"
    "  veilfs fsck ~/cipher --passfile ~/.veilfs-pass\n"
    "  veilfs fsck ~/cipher --repair        # repairs what can be repaired, printing each repair\n\n"
    "Options";

// One line on a terminal, redrawn at most ten times a second: large volumes take a while.
class ProgressLine {
 public:
  explicit ProgressLine(bool on) : on_(on) {}
  void update(const Stats& s) {
    if (!on_) return;
    auto now = std::chrono::steady_clock::now();
    if (now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    std::fprintf(stderr, "\r\033[Kchecking: %llu dirs, %llu files, %llu symlinks, %.1f MiB verified",
                 static_cast<unsigned long long>(s.dirs), static_cast<unsigned long long>(s.files),
                 static_cast<unsigned long long>(s.symlinks), static_cast<double>(s.bytes) / (1 << 20));
    shown_ = true;
  }
  // Before anything else is printed on the terminal.
  void clear() {
    if (shown_) std::fputs("\r\033[K", stderr);
    shown_ = false;
  }

 private:
  bool on_;
  bool shown_ = false;
  std::chrono::steady_clock::time_point last_{};
};

// Lets the walk hold one descriptor per directory level without hitting a soft limit of 1,024.
void raise_fd_limit() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
}

}  // namespace

int fsck_main(int argc, char** argv) {
  return cli::run_guarded("veilfs fsck", [&]() -> int {
    po::options_description opts(kUsage);
    std::string cipherdir;
    Options opt;
    cli::SecretSource src;
    opts.add_options()("help,h", "show this help");
    cli::add_secret_options(opts, src);
    cli::add_config_option(opts, opt.config_file);
    opts.add_options()("repair",
                       "repair what an interrupted operation or a power cut leaves (veilfs(1)), printing each repair")(
        "delete-orphans",
        "with --repair, also delete sidecars whose entry is missing (DESTRUCTIVE on a tree a sync service is "
        "still filling in: the entry may yet arrive, and the deletion syncs to every copy)")(
        "rename-conflicts",
        "with --repair, give each sync conflict copy an ordinary encrypted name: the name the mount shows it under")(
        "quiet,q", "print only problems and repairs (no progress line, no summary)");
    po::options_description hidden;
    hidden.add_options()("cipherdir", po::value(&cipherdir));
    po::options_description all;
    all.add(opts).add(hidden);
    po::positional_options_description pos;
    pos.add("cipherdir", 1);
    po::variables_map vm;
    try {
      po::store(po::command_line_parser(argc, argv).options(all).positional(pos).run(), vm);
      po::notify(vm);
    } catch (const po::error& e) {
      std::fprintf(stderr, "veilfs fsck: %s\n", e.what());
      return cli::kExitUsage;
    }
    if (vm.count("help")) {
      std::cout << opts << "\n";
      return cli::kExitOk;
    }
    if (cipherdir.empty()) {
      std::fprintf(stderr, "veilfs fsck: missing CIPHERDIR (see --help)\n");
      return cli::kExitUsage;
    }
    const bool quiet = vm.count("quiet") > 0;
    opt.repair = vm.count("repair") > 0;
    opt.delete_orphans = vm.count("delete-orphans") > 0;
    opt.rename_conflicts = vm.count("rename-conflicts") > 0;
    if ((opt.delete_orphans || opt.rename_conflicts) && !opt.repair) {  // a usage error: before the passphrase
      std::fprintf(stderr, "veilfs fsck: --delete-orphans and --rename-conflicts need --repair\n");
      return cli::kExitUsage;
    }
    cli::check_single_source(src);
    disable_core_dumps();
    raise_fd_limit();

    // Before the passphrase is asked: a missing dir, no config or a newer format fail at once (a corrupt config
    // is reported below, as the problem it is).
    try {
      cli::preflight_volume(cipherdir, opt.config_file);
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::Corrupt) throw;
    }
    SecretBytes secret = cli::read_secret(src, "Passphrase: ");

    ProgressLine bar(!quiet && ::isatty(STDERR_FILENO) == 1);
    opt.max_kept_problems = 0;  // printed as found: memory stays bounded on a badly damaged volume
    opt.on_problem = [&](const Problem& p) {
      bar.clear();
      std::printf("%s\n", p.line().c_str());
      std::fflush(stdout);
    };
    opt.on_repair = [&](const std::string& cipher_path) {
      bar.clear();
      std::printf("repair: removed %s\n", cipher_path.c_str());
      std::fflush(stdout);
    };
    opt.on_progress = [&](const Stats& s) { bar.update(s); };
    Report r;
    try {
      r = check_volume(cipherdir, secret.span(), opt);
    } catch (const Error& e) {
      cli::rethrow_at(cipherdir, e);
    }
    bar.clear();
    if (!r.config_ok) return cli::kExitCorrupt;
    const uint64_t left = r.problem_count - r.repaired_count;
    if (!quiet) {
      std::printf("veilfs fsck: %llu directories, %llu files, %llu symlinks, %llu other; %.1f MiB verified; ",
                  static_cast<unsigned long long>(r.stats.dirs), static_cast<unsigned long long>(r.stats.files),
                  static_cast<unsigned long long>(r.stats.symlinks), static_cast<unsigned long long>(r.stats.others),
                  static_cast<double>(r.stats.bytes) / (1 << 20));
      if (r.problem_count == 0)
        std::printf("clean");
      else
        std::printf("%llu problem(s), %llu repaired", static_cast<unsigned long long>(r.problem_count),
                    static_cast<unsigned long long>(r.repaired_count));
      if (r.notice_count)
        std::printf("; %llu sync conflict cop%s to resolve", static_cast<unsigned long long>(r.notice_count),
                    r.notice_count == 1 ? "y" : "ies");
      std::printf("\n");
    }
    return left == 0 ? cli::kExitOk : cli::kExitFsckDamage;
  });
}

}  // namespace veil::fsck
