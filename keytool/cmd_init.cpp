// veilkey init: create a volume in an empty directory.
#include <fcntl.h>
#include <sys/stat.h>

#include <cstdio>

#include "keytool.hpp"
#include "veilfs/cli/exit_codes.hpp"
#include "veilfs/util/error.hpp"
#include "veilfs/util/io.hpp"
#include "veilfs/volume.hpp"

namespace veil::keytool {

namespace {

constexpr CommandHelp kHelp{
    "veilkey init CIPHERDIR [options]",
    "Creates a new veilfs volume in CIPHERDIR, which must be empty (it is created if missing). The passphrase\n"
    "is asked twice on a terminal. The master key is printed once, on standard output, as a recovery code:\n"
    "write it down and keep it offline, it opens the volume without any passphrase.",
    "  veilkey init ~/vault.enc\n"
    "  veilkey init ~/vault.enc --cipher xchacha20poly1305 --passfile pass.txt > recovery.txt\n"
    "  veilkey init /data/backup.enc --keyfile /media/usb/backup.key --no-recovery-code\n"
    "  veilkey init ~/vault.enc --kdf-memory 1073741824 --kdf-ops 4   # a slower, stronger slot\n"};

bool is_empty_dir(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) throw_errno("open cipher dir");
  return dir_is_empty(fd.get());
}

}  // namespace

int cmd_init(const Args& args) {
  cli::SecretSource src;
  KdfChoice kdf;
  std::string cipher;
  uint32_t block_size = format::kDefaultBlockSize;
  bool no_recovery_code = false;
  po::options_description d("Options", kHelpWidth);
  add_secret_options(d, src);
  d.add_options()  //
      ("cipher", po::value(&cipher)->value_name("NAME"),
       "aes256gcm or xchacha20poly1305 (default: the fastest this CPU runs securely)")  //
      ("block-size", po::value(&block_size)->value_name("N"),
       "plaintext bytes per block: a power of two, 4096 .. 1048576 (default 4096)")  //
      ("no-recovery-code", po::bool_switch(&no_recovery_code), "do not print the recovery code");
  add_kdf_options(d, kdf);
  po::variables_map vm;
  if (!parse_options(args, kHelp, d, {"CIPHERDIR"}, vm)) return cli::kExitOk;
  const std::string dir = vm["CIPHERDIR"].as<std::string>();

  CreateOptions opt;
  if (!cipher.empty()) {
    auto id = cipher_from_name(cipher);
    if (!id) throw_invalid("--cipher must be aes256gcm or xchacha20poly1305");
    opt.cipher = *id;
  }
  opt.block_size = block_size;
  opt.kdf = kdf.resolve(kArgonDefault);
  opt.slot_kind = kind_of(src);

  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) throw_errno("create cipher dir");
  // Checked before the prompt so nobody types a passphrase for nothing, and again under the lock below.
  if (!is_empty_dir(dir)) return refuse("refusing to create a volume in a non-empty directory");

  SecretBytes secret = cli::read_secret(src, "New passphrase: ", /*confirm=*/true);
  ConfigLock lock(dir);  // two concurrent inits: the second finds the first's files and refuses
  if (!dir_is_empty(lock.dirfd())) return refuse("refusing to create a volume in a non-empty directory");
  SecretBytes master;
  try {
    master = Volume::create(dir, secret.span(), opt);
  } catch (const Error& e) {
    if (e.sys_errno() == ENOTEMPTY) return refuse("refusing to create a volume in a non-empty directory");
    throw;
  }
  std::fprintf(stderr,
               "veilkey: created a veilfs volume (cipher %s, block size %u, argon2id opslimit=%llu memlimit=%llu)\n",
               std::string(cipher_name(opt.cipher)).c_str(), opt.block_size,
               static_cast<unsigned long long>(opt.kdf.opslimit), static_cast<unsigned long long>(opt.kdf.memlimit));
  if (!no_recovery_code) {
    std::fprintf(stderr,
                 "veilkey: recovery code below (standard output). It opens the volume without any passphrase:\n"
                 "         write it down, keep it offline; it is shown only now (or later by `veilkey export-key`).\n");
    print_recovery_code(master);
  }
  return cli::kExitOk;
}

}  // namespace veil::keytool
