#include "fuse/options.hpp"

#include <boost/program_options.hpp>
#include <optional>
#include <sstream>

#include "veilfs/cli/secret_options.hpp"
#include "veilfs/util/error.hpp"

namespace po = boost::program_options;

namespace veil::fuse {
namespace {

po::options_description visible_options() {
  po::options_description d("Options");
  d.add_options()                                                //
      ("help,h", "show this help and exit")                      //
      ("version,V", "show the version and exit")                 //
      ("foreground,f", "stay in the foreground, log to stderr")  //
      ("debug,d", "log every request (implies --foreground)")    //
      ("ro", "mount read-only")                                  //
      ("reverse",
       "CIPHERDIR is a plain directory (veilkey init --reverse): mount its encrypted view, read-only, for "
       "backups; a copy of the view is a veilfs volume")  //
      ("exclude", po::value<std::vector<std::string>>()->composing()->value_name("PATTERN"),
       "--reverse: leave the plain paths that match this gitignore-style pattern out of the view (repeatable)")  //
      ("exclude-from", po::value<std::vector<std::string>>()->composing()->value_name("FILE"),
       "--reverse: the same for every line of FILE")                       //
      ("allow-other", "let other users in (implies default_permissions)")  //
      ("shared-storage",
       "the cipher dir has other writers (a second mount, sshfs, a sync client): no kernel caching beyond "
       "0.5 s, changes made elsewhere show within a second")  //
      ("badname", po::value<std::vector<std::string>>()->composing()->value_name("GLOB"),
       "show backing names that do not decode and match this glob as \"NAME [undecodable name]\" (repeatable), "
       "to rescue them")                                                                                        //
      ("nonempty", "mount even over a non-empty directory or an existing mount, hiding what is there")          //
      ("passfile", po::value<std::string>()->value_name("FILE"), "read the passphrase from FILE (first line)")  //
      ("extpass", po::value<std::string>()->value_name("CMD"),
       "run CMD (with /bin/sh -c) and read the passphrase from the first line of its output")              //
      ("keyfile", po::value<std::string>()->value_name("FILE"), "unlock with the whole contents of FILE")  //
      ("recovery-code",
       "unlock with the volume's recovery code instead (asked on the terminal, or standard input's first line); "
       "works without the config, from veilfs.params")  //
      ("recovery-code-file", po::value<std::string>()->value_name("FILE"),
       "--recovery-code, read from the first line of FILE")                             //
      ("config", po::value<std::string>()->value_name("FILE"), cli::kConfigOptionHelp)  //
      ("idle", po::value<std::string>()->value_name("DURATION"),
       "unmount after DURATION (90s, 10m, 1h30m; a bare number is seconds) without any access, unless files "
       "are open")                                                                                       //
      ("logfile", po::value<std::string>()->value_name("FILE"), "append the daemon's messages to FILE")  //
      ("syslog", "log to syslog even in the foreground")                                                 //
      ("no-syslog", "do not log to syslog once detached (messages are lost unless --logfile)")           //
      ("options,o", po::value<std::vector<std::string>>()->composing()->value_name("OPTS"),
       "comma-separated mount options; passfile=, extpass=, keyfile=, recovery_code_file=, config=, idle=, "
       "logfile=, allow_other, shared_storage, badname=, ro, rw, debug and nonempty are ours, the rest goes to "
       "FUSE (checked before the passphrase is read)");
  return d;
}

// Records one secret option; a second one, of any kind, is a usage error (which one would win is not obvious).
void take_secret(std::vector<std::string>& given, std::optional<std::string>& field, std::string& option_name,
                 const std::string& spelling, const std::string& value) {
  if (value.empty()) throw_invalid(spelling + " needs a value");
  given.push_back(spelling);
  if (given.size() > 1)
    throw_invalid(given[0] + " and " + given[1] + " cannot be combined: give one source of the secret");
  field = value;
  option_name = spelling;
}

// "90s", "10m", "1h30m", "500ms", "90" (seconds): milliseconds, at least 1 s.
unsigned parse_duration(const std::string& text, const std::string& option) {
  auto bad = [&] {
    throw_invalid(option + " " + text + ": not a duration (say 90s, 10m, 1h30m; a bare number is seconds)");
  };
  if (text.empty()) bad();
  uint64_t total = 0;
  size_t i = 0;
  while (i < text.size()) {
    size_t j = i;
    while (j < text.size() && text[j] >= '0' && text[j] <= '9') ++j;
    if (j == i || j - i > 9) bad();
    const uint64_t n = std::stoull(text.substr(i, j - i));
    size_t k = j;
    while (k < text.size() && (text[k] < '0' || text[k] > '9')) ++k;
    const std::string unit = text.substr(j, k - j);
    uint64_t ms = 0;
    if (unit == "ms")
      ms = 1;
    else if (unit == "s" || (unit.empty() && i == 0 && k == text.size()))
      ms = 1000;
    else if (unit == "m" || unit == "min")
      ms = 60'000;
    else if (unit == "h")
      ms = 3'600'000;
    else
      bad();
    total += n * ms;
    if (total > 30ull * 24 * 3'600'000) throw_invalid(option + " " + text + ": longer than 30 days");
    i = k;
  }
  if (total < 1000) throw_invalid(option + " " + text + ": shorter than one second");
  return static_cast<unsigned>(total);
}

// -o values: ours are taken out (so /etc/fstab entries work through mount.fuse3), the rest passed on.
void absorb_mount_options(const std::string& list, MountOptions& o, std::vector<std::string>& secrets) {
  std::stringstream ss(list);
  std::string opt;
  while (std::getline(ss, opt, ',')) {
    if (opt.empty()) continue;
    if (opt == "rw") {  // the last of ro and rw wins, as with mount(8)
      o.read_only = false;
      continue;
    }
    auto value = [&](std::string_view key) -> std::optional<std::string> {
      if (opt.rfind(key, 0) == 0) return opt.substr(key.size());
      return std::nullopt;
    };
    if (auto v = value("passfile=")) {
      take_secret(secrets, o.secret.passfile, o.secret.passfile_option, "-o passfile=", *v);
    } else if (auto v = value("extpass=")) {
      take_secret(secrets, o.secret.extpass, o.secret.extpass_option, "-o extpass=", *v);
    } else if (auto v = value("keyfile=")) {
      take_secret(secrets, o.secret.keyfile, o.secret.keyfile_option, "-o keyfile=", *v);
    } else if (auto v = value("recovery_code_file=")) {
      take_secret(secrets, o.secret.passfile, o.secret.passfile_option, "-o recovery_code_file=", *v);
      o.recovery_code = true;
    } else if (auto v = value("config=")) {
      if (v->empty()) throw_invalid("-o config= needs a file name");
      o.config_file = *v;
    } else if (auto v = value("idle=")) {
      o.idle_ms = parse_duration(*v, "-o idle=");
    } else if (auto v = value("logfile=")) {
      if (v->empty()) throw_invalid("-o logfile= needs a file name");
      o.logfile = *v;
    } else if (opt == "reverse") {
      o.reverse = true;
    } else if (opt == "remount") {
      o.remount = true;
    } else if (opt == "nonempty") {
      o.nonempty = true;
    } else if (opt == "allow_other") {
      o.allow_other = true;
    } else if (opt == "ro") {
      o.read_only = true;
    } else if (opt == "shared_storage") {
      o.shared_storage = true;
    } else if (auto v = value("badname=")) {
      o.badname.push_back(*v);
    } else if (opt == "debug") {
      o.debug = true;
    } else {
      o.fuse_options.push_back(opt);
    }
  }
}

}  // namespace

std::string usage_text() {
  std::ostringstream s;
  s << "Usage: veilfs [options] CIPHERDIR MOUNTPOINT\n"
       "       veilfs fsck [options] CIPHERDIR\n"
       "       veilfs xray [--to-cipher] [options] CIPHERDIR PATH...\n\n"
       "Mounts the encrypted directory CIPHERDIR at MOUNTPOINT. The passphrase comes from --keyfile,\n"
       "--passfile, --extpass, standard input when it is not a terminal, or the terminal.\n"
       "Unmount with `fusermount3 -u MOUNTPOINT`.\n\n"
    << visible_options()
    << "\n-o debug, -o nonempty, -o shared_storage, -o badname=GLOB, -o config=FILE, -o idle=DURATION,\n"
       "-o logfile=FILE and -o recovery_code_file=FILE are the long options of the same names;\n"
       "-o remount,ro and -o remount,rw (what `mount -o remount,ro MOUNTPOINT` passes) change a live mount. Other -o\n"
       "options are FUSE's (see mount.fuse3(8)): each is checked before the passphrase is read, and an\n"
       "unknown one is refused (exit 2).\n"
       "The mountpoint must be an empty directory that is not already a mount (else exit 15; --nonempty\n"
       "overrides). A dead mount (\"Transport endpoint is not connected\") needs `fusermount3 -u MOUNTPOINT`.\n"
       "Without the config (lost, or kept elsewhere and not at hand), --recovery-code mounts from veilfs.params;\n"
       "`veilkey recover` then writes a new config.\n"
       "\nExit codes: 0 ok, 1 other error, 2 usage (also a conflicting or unusable secret option or -o option),\n"
       "10 wrong passphrase or key file, 11 not a volume (or no such directory), 12 unsupported format,\n"
       "13 corrupt config, 14 I/O error, 15 mount failed (mountpoint missing, not empty, already mounted),\n"
       "17 the recovery code has a typo.\n"
       "veilfs fsck: 26 damage found.\n";
  return s.str();
}

MountOptions parse_command_line(int argc, char** argv) {
  po::options_description hidden;
  hidden.add_options()("cipherdir", po::value<std::string>())("mountpoint", po::value<std::string>());
  po::options_description all;
  all.add(visible_options()).add(hidden);
  po::positional_options_description pos;
  pos.add("cipherdir", 1).add("mountpoint", 1);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(all).positional(pos).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    throw Error(ErrorKind::InvalidArgument, EINVAL, std::string(e.what()) + " (see --help)");
  }
  MountOptions o;
  o.help = vm.count("help") > 0;
  o.version = vm.count("version") > 0;
  if (o.help || o.version) return o;
  o.debug = vm.count("debug") > 0;
  o.foreground = vm.count("foreground") > 0;
  o.read_only = vm.count("ro") > 0;
  o.reverse = vm.count("reverse") > 0;
  if (vm.count("exclude")) o.excludes = vm["exclude"].as<std::vector<std::string>>();
  if (vm.count("exclude-from")) o.exclude_files = vm["exclude-from"].as<std::vector<std::string>>();
  o.allow_other = vm.count("allow-other") > 0;
  o.shared_storage = vm.count("shared-storage") > 0;
  if (vm.count("badname")) o.badname = vm["badname"].as<std::vector<std::string>>();
  o.nonempty = vm.count("nonempty") > 0;
  std::vector<std::string> secrets;  // the secret options given, as spelt
  if (vm.count("passfile"))
    take_secret(secrets, o.secret.passfile, o.secret.passfile_option, "--passfile", vm["passfile"].as<std::string>());
  if (vm.count("extpass"))
    take_secret(secrets, o.secret.extpass, o.secret.extpass_option, "--extpass", vm["extpass"].as<std::string>());
  if (vm.count("keyfile"))
    take_secret(secrets, o.secret.keyfile, o.secret.keyfile_option, "--keyfile", vm["keyfile"].as<std::string>());
  if (vm.count("recovery-code-file")) {
    take_secret(secrets, o.secret.passfile, o.secret.passfile_option, "--recovery-code-file",
                vm["recovery-code-file"].as<std::string>());
    o.recovery_code = true;
  }
  if (vm.count("recovery-code")) {
    secrets.push_back("--recovery-code");
    if (secrets.size() > 1)
      throw_invalid(secrets[0] + " and " + secrets[1] + " cannot be combined: give one source of the secret");
    o.recovery_code = true;
  }
  if (vm.count("config")) {
    o.config_file = vm["config"].as<std::string>();
    if (o.config_file.empty()) throw_invalid("--config needs a file name");
  }
  if (vm.count("idle")) o.idle_ms = parse_duration(vm["idle"].as<std::string>(), "--idle");
  if (vm.count("logfile")) {
    o.logfile = vm["logfile"].as<std::string>();
    if (o.logfile.empty()) throw_invalid("--logfile needs a file name");
  }
  if (vm.count("syslog") && vm.count("no-syslog")) throw_invalid("--syslog and --no-syslog cannot be combined");
  if (vm.count("syslog")) o.syslog = MountOptions::Syslog::On;
  if (vm.count("no-syslog")) o.syslog = MountOptions::Syslog::Off;
  if (vm.count("options"))
    for (const auto& list : vm["options"].as<std::vector<std::string>>()) absorb_mount_options(list, o, secrets);
  // The recovery code may also come after the options naming it; any other secret then conflicts (above).
  if (o.recovery_code) o.secret.what = "recovery code";
  if (o.debug) o.foreground = true;
  if (!o.reverse && (!o.excludes.empty() || !o.exclude_files.empty()))
    throw_invalid("--exclude and --exclude-from need --reverse (they choose what the encrypted view shows)");
  if (!vm.count("cipherdir") || !vm.count("mountpoint"))
    throw Error(ErrorKind::InvalidArgument, EINVAL, "need CIPHERDIR and MOUNTPOINT (see --help)");
  o.cipherdir = vm["cipherdir"].as<std::string>();
  o.mountpoint = vm["mountpoint"].as<std::string>();
  return o;
}

}  // namespace veil::fuse
