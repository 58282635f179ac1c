// veilkey init: create a volume in an empty directory.
#include <fcntl.h>
#include <sys/stat.h>

#include <cstdio>
#include <string>
#include <vector>

#include "keytool.hpp"
#include "veilfs/cli/cipher_dir.hpp"
#include "veilfs/cli/exit_codes.hpp"
#include "veilfs/format/block_layout.hpp"
#include "veilfs/format/constants.hpp"
#include "veilfs/layout/cipher_dir.hpp"
#include "veilfs/reverse/reverse_view.hpp"
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
    "  veilkey init ~/vault.enc --kdf-memory 1G --kdf-ops 4   # a slower, stronger slot\n"
    "  veilkey init /data/backup.enc --random-keyfile /media/usb/backup.key   # creates the key file\n"
    "  veilkey init --reverse ~/Documents   # then: veilfs --reverse ~/Documents /mnt/encrypted-view\n"};

bool is_empty_dir(const std::string& path) {
  UniqueFd fd = cli::open_cipher_dir(path);
  return dir_is_empty(fd.get());
}

// A failed init leaves the directory as it found it: a directory init created is removed, and what init wrote
// into the (checked empty, under the lock) directory is removed with it.
struct UndoInit {
  std::string dir;
  bool created_dir = false;
  bool owns_contents = false;  // set once the directory was found empty under the lock
  bool done = false;
  ~UndoInit() {
    if (done) return;
    if (owns_contents) {
      UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      if (fd) {
        std::vector<std::string> ours;
        for_each_dir_entry(fd.get(), [&](std::string_view name) {
          if (name == format::kConfigName || name == format::kParamsName || name == format::kDirIvName ||
              layout::is_temp_file(name))
            ours.emplace_back(name);
          return true;
        });
        for (const auto& name : ours) ::unlinkat(fd.get(), name.c_str(), 0);
      }
    }
    if (created_dir) ::rmdir(dir.c_str());  // fails, harmlessly, if anything else is in it
  }
};

}  // namespace

static int report_created(const CreateOptions& opt, const SecretBytes& master, bool no_recovery_code);

// A reverse volume: the plain directory stays as it is; only the config is written (never over another).
static int init_reverse(const std::string& dir, NewSecret& fresh, const CreateOptions& opt, bool no_recovery_code) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return refuse(dir + ": init --reverse needs the plain directory to exist (it is not a directory)");
  SecretBytes secret = fresh.read();
  ConfigLock lock(dir, opt.config_file);
  SecretBytes master;
  try {
    master = Volume::create(dir, secret.span(), opt);
  } catch (const Error& e) {
    if (e.sys_errno() == EEXIST) return refuse(opt.config_file + ": exists already (init never writes over a config)");
    cli::rethrow_at(dir + ": cannot create the reverse volume", e);
  }
  fresh.committed();
  return report_created(opt, master, no_recovery_code);
}

int cmd_init(const Args& args) {
  NewSecret fresh;
  KdfChoice kdf;
  std::string cipher;
  uint32_t block_size = format::kDefaultBlockSize;
  bool no_recovery_code = false;
  bool reverse_mode = false;
  po::options_description d("Options", kHelpWidth);
  add_init_secret_options(d, fresh);
  d.add_options()  //
      ("cipher", po::value(&cipher)->value_name("NAME"),
       "aes256gcm or xchacha20poly1305 (default: the fastest this CPU runs securely)")  //
      ("block-size", po::value(&block_size)->value_name("N"),
       "plaintext bytes per block: a power of two, 4096 .. 1048576 (default 4096)")               //
      ("no-recovery-code", po::bool_switch(&no_recovery_code), "do not print the recovery code")  //
      ("reverse", po::bool_switch(&reverse_mode),
       "CIPHERDIR is a plain directory to back up encrypted: write only its reverse config "
       "(CIPHERDIR/.veilfs.reverse.conf unless --config), for `veilfs --reverse`");
  add_kdf_options(d, kdf);
  po::variables_map vm;
  if (!parse_options(args, kHelp, d, {"CIPHERDIR"}, vm)) return cli::kExitOk;
  const std::string dir = vm["CIPHERDIR"].as<std::string>();
  fresh.check();

  CreateOptions opt;
  if (!cipher.empty()) {
    auto id = cipher_from_name(cipher);
    if (!id) throw_invalid("--cipher must be aes256gcm or xchacha20poly1305");
    opt.cipher = *id;
  }
  opt.block_size = block_size;
  try {
    format::BlockLayout(opt.cipher, opt.block_size);  // before anything is created or asked
  } catch (const Error& e) {
    cli::rethrow_at("--block-size " + std::to_string(block_size), e);
  }
  opt.kdf = kdf.resolve(fresh.is_random() ? kArgonRandomKey : kArgonDefault);
  opt.slot_kind = fresh.kind();
  opt.config_file = config_of(vm);
  opt.reverse = reverse_mode;
  if (reverse_mode && opt.config_file.empty()) opt.config_file = dir + "/" + std::string(reverse::kReverseConfigName);
  // Checked before the prompt (and again when it is written, exclusively): an existing config is never replaced.
  if (struct stat st{}; !opt.config_file.empty() && ::lstat(opt.config_file.c_str(), &st) == 0)
    return refuse(opt.config_file + ": the config file exists already (init writes a new one, never over another)");

  if (reverse_mode) return init_reverse(dir, fresh, opt, no_recovery_code);
  UndoInit undo{dir};
  if (::mkdir(dir.c_str(), 0700) == 0) {
    undo.created_dir = true;
  } else if (errno != EEXIST) {
    throw_errno(dir + ": cannot create the cipher dir");
  } else if (struct stat st{}; ::stat(dir.c_str(), &st) == 0 && !S_ISDIR(st.st_mode)) {
    return refuse(dir + ": exists and is not a directory (init needs an empty or missing directory)");
  }
  const std::string non_empty = dir + ": refusing to create a volume in a non-empty directory";
  // Checked before the prompt so nobody types a passphrase for nothing, and again under the lock below.
  if (!is_empty_dir(dir)) return refuse(non_empty);

  SecretBytes secret = fresh.read();
  ConfigLock lock(dir, config_of(vm));  // two concurrent inits: the second finds the first's files and refuses
  if (!dir_is_empty(lock.dirfd())) return refuse(non_empty);
  undo.owns_contents = true;
  SecretBytes master;
  try {
    master = Volume::create(dir, secret.span(), opt);
  } catch (const Error& e) {
    if (e.sys_errno() == ENOTEMPTY) {
      undo.owns_contents = false;
      return refuse(non_empty);
    }
    cli::rethrow_at(dir + ": cannot create the volume", e);
  }
  fresh.committed();
  undo.done = true;
  return report_created(opt, master, no_recovery_code);
}

static int report_created(const CreateOptions& opt, const SecretBytes& master, bool no_recovery_code) {
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
