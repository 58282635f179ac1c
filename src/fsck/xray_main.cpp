#include "fsck/xray_main.hpp"

#include <boost/program_options.hpp>
#include <cstdio>
#include <iostream>

#include "veilfs/cli/cipher_dir.hpp"
#include "veilfs/cli/exit_codes.hpp"
#include "veilfs/cli/secret_options.hpp"
#include "veilfs/cli/secret_source.hpp"
#include "veilfs/crypto/secret.hpp"
#include "veilfs/path_map.hpp"

namespace veil::fsck {

namespace po = boost::program_options;

namespace {

constexpr const char* kUsage =
    "Usage: veilfs xray [options] CIPHERDIR PATH...\n"
    "       veilfs xray --to-cipher [options] CIPHERDIR PLAINPATH...\n"
    "Translates paths between a cipher dir and its plain view, without mounting: which file a backing path\n"
    "(named by fsck, a backup tool or a sync service) is, and which backing files to restore from a backup of\n"
    "the cipher dir for a plain path. A PATH is relative to CIPHERDIR or an absolute path inside it; a PLAINPATH\n"
    "is relative to the mount's root. Prints one line per path: the plain path (with what the backing file is to\n"
    "it, for veilfs's own files), or with --to-cipher every backing file of the entry (the entry first, then its\n"
    "long-name sidecar, its long target's sidecar or its IV file).\n\n"
    "Exit codes: 0 ok, 1 a path could not be translated (said why), 2 usage, 10 wrong passphrase or key file,\n"
    "11 not a volume, 12 unsupported format, 13 corrupt config, 14 I/O error.\n\n"
    "Examples:\n"
    "  veilfs xray ~/cipher 5tCnZ0d3.../Wq3C8bEr...      # what is this backing file?\n"
    "  veilfs xray --to-cipher ~/cipher docs/report.txt  # what to restore from the backup\n\n"
    "Options";

// PATH relative to the cipher dir: an absolute one must lie inside it (lexically; the file may be gone).
std::string relative_to(const std::string& cipherdir, const std::string& path) {
  if (path.empty() || path[0] != '/') return path;
  std::string root = cipherdir;
  while (root.size() > 1 && root.back() == '/') root.pop_back();
  if (path == root) return "";
  if (path.rfind(root + "/", 0) == 0) return path.substr(root.size() + 1);
  throw Error(ErrorKind::InvalidArgument, EINVAL, path + ": not inside the cipher dir " + cipherdir);
}

}  // namespace

int xray_main(int argc, char** argv) {
  return cli::run_guarded("veilfs xray", [&]() -> int {
    po::options_description opts(kUsage);
    std::string cipherdir;
    std::vector<std::string> paths;
    std::string config_file;
    cli::SecretSource src;
    opts.add_options()("help,h", "show this help")("to-cipher,c", "PATHs are plain paths: print their backing files");
    cli::add_secret_options(opts, src);
    cli::add_config_option(opts, config_file);
    po::options_description hidden;
    hidden.add_options()("cipherdir", po::value(&cipherdir))("path", po::value(&paths));
    po::options_description all;
    all.add(opts).add(hidden);
    po::positional_options_description pos;
    pos.add("cipherdir", 1).add("path", -1);
    po::variables_map vm;
    try {
      po::store(po::command_line_parser(argc, argv).options(all).positional(pos).run(), vm);
      po::notify(vm);
    } catch (const po::error& e) {
      std::fprintf(stderr, "veilfs xray: %s\n", e.what());
      return cli::kExitUsage;
    }
    if (vm.count("help")) {
      std::cout << opts << "\n";
      return cli::kExitOk;
    }
    if (cipherdir.empty() || paths.empty()) {
      std::fprintf(stderr, "veilfs xray: needs CIPHERDIR and at least one PATH (see --help)\n");
      return cli::kExitUsage;
    }
    const bool to_cipher = vm.count("to-cipher") > 0;
    cli::check_single_source(src);
    disable_core_dumps();
    cli::preflight_volume(cipherdir, config_file);
    SecretBytes secret = cli::read_secret(src, "Passphrase: ");
    std::unique_ptr<Volume> vol;
    try {
      vol = Volume::open(cipherdir, secret.span(), config_file);
    } catch (const Error& e) {
      cli::rethrow_at(cipherdir, e);
    }
    std::string root = cipherdir;
    while (root.size() > 1 && root.back() == '/') root.pop_back();
    int rc = cli::kExitOk;
    for (const std::string& p : paths) {
      try {
        if (to_cipher) {
          for (const std::string& c : cipher_paths_of(*vol, p)) std::printf("%s/%s\n", root.c_str(), c.c_str());
        } else {
          PlainPath pp = plain_path_of(*vol, relative_to(cipherdir, p));
          if (pp.role.empty())
            std::printf("%s\n", pp.path.c_str());
          else
            std::printf("%s (%s)\n", pp.path.c_str(), pp.role.c_str());
        }
      } catch (const Error& e) {
        // Cipher names only: a plain path given to --to-cipher is the user's own input, not echoed to logs.
        std::fprintf(stderr, "veilfs xray: %s\n", e.what());
        rc = cli::kExitError;
      }
      std::fflush(stdout);
    }
    return rc;
  });
}

}  // namespace veil::fsck
