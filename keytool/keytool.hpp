// veilkey internals shared by the command groups: option helpers, the config lock, test hooks.
//
// Every command follows one shape: parse options, fail early on a directory that is not a usable volume, read
// the secrets (prompts happen before any lock is taken), then take the config lock, reload the config, change
// it, and save it atomically. Nothing secret is ever passed to an error message.
#pragma once

#include <boost/program_options.hpp>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "veilfs/cli/secret_options.hpp"
#include "veilfs/cli/secret_source.hpp"
#include "veilfs/crypto/kdf.hpp"
#include "veilfs/format/config.hpp"
#include "veilfs/util/unique_fd.hpp"

namespace veil::keytool {

namespace po = boost::program_options;
using Args = std::vector<std::string>;

// ---- command entry points (one file per group) ----
int cmd_init(const Args& args);
int cmd_passwd(const Args& args);
int cmd_slot(const Args& args);
int cmd_info(const Args& args);
int cmd_export_key(const Args& args);
int cmd_recover(const Args& args);

// ---- options ----
constexpr unsigned kHelpWidth = 110;  // --help line length (Boost's default of 80 wraps every description)
struct CommandHelp {
  std::string_view usage;     // "veilkey passwd CIPHERDIR [options]"
  std::string_view summary;   // one paragraph
  std::string_view examples;  // lines of shell
};

// --keyfile/--passfile/--extpass: the secret that opens an existing slot (or, for init, the first slot).
using cli::add_secret_options;

// A key file that veilkey generates: 32 random bytes written to a new file (O_EXCL, mode 0400, fsynced with its
// directory) before the config that uses it is saved, and removed again if the command fails before that.
class GeneratedKeyFile {
 public:
  explicit GeneratedKeyFile(std::string path);  // throws, naming the path (it must not exist)
  ~GeneratedKeyFile();
  GeneratedKeyFile(const GeneratedKeyFile&) = delete;
  GeneratedKeyFile& operator=(const GeneratedKeyFile&) = delete;
  const SecretBytes& key() const { return key_; }
  void keep() { keep_ = true; }  // the config naming its slot is saved

 private:
  std::string path_;
  SecretBytes key_;
  bool keep_ = false;
};

// The secret for a new slot: --new-keyfile/--new-passfile/--new-extpass, or --new-random-keyfile (a key file
// veilkey creates; init spells these --keyfile/--passfile/--extpass/--random-keyfile).
struct NewSecret {
  cli::SecretSource src;
  std::optional<std::string> random_keyfile;
  std::string random_keyfile_option = "--new-random-keyfile";
  std::unique_ptr<GeneratedKeyFile> generated;

  bool is_random() const { return random_keyfile.has_value(); }
  format::SlotKind kind() const;
  // At most one source; throws Error(InvalidArgument) naming both options otherwise.
  void check() const;
  // The secret: the generated key, or from src / stdin's next line / the terminal (asked twice).
  SecretBytes read();
  // Call once the config holding the new slot is saved (a generated key file is then kept).
  void committed();
};
void add_new_secret_options(po::options_description& d, NewSecret& s);
// init: the same choices under the plain option names.
void add_init_secret_options(po::options_description& d, NewSecret& s);

// Argon2id cost of a slot whose secret is a key veilkey generated: 256 random bits cannot be guessed, so the KDF
// adds nothing and gets the minimum the format accepts (1 pass, 8 KiB).
constexpr Argon2Params kArgonRandomKey{kArgonMinOps, kArgonMinMem};

struct KdfChoice {
  std::optional<uint64_t> memory;
  std::optional<uint64_t> ops;
  // Bounds-checked (kArgonMin*/kArgonMax*); unset values come from dflt.
  Argon2Params resolve(const Argon2Params& dflt) const;
};
// keep_old: the defaults are the replaced slot's parameters (passwd), not kArgonDefault.
void add_kdf_options(po::options_description& d, KdfChoice& kdf, bool keep_old = false);

using cli::into;

// Parses args into vm (named options plus the positional ones in `positional`, each taken once).
// Returns false after printing help for --help. Bad command lines throw Error(InvalidArgument) -> exit 2.
// Every command also takes --config FILE (a config kept outside the cipher dir): see config_of.
bool parse_options(const Args& args, const CommandHelp& help, po::options_description& named,
                   const std::vector<std::string>& positional, po::variables_map& vm);
// --config's value, empty when the config is CIPHERDIR/veilfs.conf.
std::string config_of(const po::variables_map& vm);

// ---- secrets ----
SecretBytes read_existing_secret(const cli::SecretSource& src);

// "64M", "1G", "8K", "8KiB", "268435456": bytes (K, M, G are powers of 1024). Throws Error(InvalidArgument).
uint64_t parse_size(const std::string& text, const std::string& option);

// ---- the volume ----
// Opens CIPHERDIR and loads its config without locking, so that a directory that is not a volume fails before
// any prompt (exit 11/12/13/14, the message naming the path).
format::VolumeConfig preflight(const std::string& cipherdir, const std::string& config_file);

// flock(LOCK_EX) on the cipher dir, held for the life of the object: veilkey commands on one volume take turns
// through every read-modify-write of the config, so none of them can write back a config missing another's slot.
class ConfigLock {
 public:
  ConfigLock(std::string cipherdir, std::string config_file);
  int dirfd() const { return dir_.get(); }
  // Always reload after locking: the config may have changed since preflight().
  format::VolumeConfig load() const;
  // veilfs.params (the config without slots) for recreating a lost config; throws NotFound when it is missing.
  format::VolumeConfig load_params() const;
  // Atomic replace (VolumeConfig::save: temp, fsync, rename, fsync dir) after removing temp files that an
  // interrupted veilkey left behind.
  void save(const format::VolumeConfig& cfg) const;

 private:
  std::string path_;
  std::string config_file_;  // empty: path_/veilfs.conf
  UniqueFd dir_;
};

// Prints "veilkey: <why>" and returns kExitRefused: the request was understood and deliberately not done.
int refuse(const std::string& why);

// Prints "slot N: kind, argon2id ..." lines.
void print_slots(const format::VolumeConfig& cfg, std::string_view indent);
// Writes the recovery code of master to stdout (one line), straight from secure memory.
void print_recovery_code(const SecretBytes& master);

// ---- test-only hooks (see test_hooks.cpp) ----
void install_test_hooks();
void test_point(const char* stage);

}  // namespace veil::keytool
