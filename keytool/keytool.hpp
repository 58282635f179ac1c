// veilkey internals shared by the command groups: option helpers, the config lock, test hooks.
//
// Every command follows one shape: parse options, fail early on a directory that is not a usable volume, read
// the secrets (prompts happen before any lock is taken), then take the config lock, reload the config, change
// it, and save it atomically. Nothing secret is ever passed to an error message.
#pragma once

#include <boost/program_options.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

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
void add_secret_options(po::options_description& d, cli::SecretSource& src);
// --new-keyfile/--new-passfile/--new-extpass: the secret for a new slot.
void add_new_secret_options(po::options_description& d, cli::SecretSource& src);

struct KdfChoice {
  std::optional<uint64_t> memory;
  std::optional<uint64_t> ops;
  // Bounds-checked (kArgonMin*/kArgonMax*); unset values come from dflt.
  Argon2Params resolve(const Argon2Params& dflt) const;
};
// keep_old: the defaults are the replaced slot's parameters (passwd), not kArgonDefault.
void add_kdf_options(po::options_description& d, KdfChoice& kdf, bool keep_old = false);

// An option value stored into a std::optional (Boost.Program_options 1.74 only knows boost::optional).
template <typename T>
po::typed_value<T>* into(std::optional<T>& slot, const char* value_name) {
  return po::value<T>()->value_name(value_name)->notifier([&slot](const T& v) { slot = v; });
}

// Parses args into vm (named options plus the positional ones in `positional`, each taken once).
// Returns false after printing help for --help. Bad command lines throw Error(InvalidArgument) -> exit 2.
bool parse_options(const Args& args, const CommandHelp& help, po::options_description& named,
                   const std::vector<std::string>& positional, po::variables_map& vm);

// ---- secrets ----
SecretBytes read_existing_secret(const cli::SecretSource& src);
// The secret for a new slot: from src, or stdin's next line, or asked twice on a terminal.
SecretBytes read_new_secret(const cli::SecretSource& src);
format::SlotKind kind_of(const cli::SecretSource& src);

// ---- the volume ----
// Opens CIPHERDIR and loads its config without locking, so that a directory that is not a volume fails before
// any prompt (exit 11/12/13).
format::VolumeConfig preflight(const std::string& cipherdir);

// flock(LOCK_EX) on the cipher dir, held for the life of the object: veilkey commands on one volume take turns
// through every read-modify-write of the config, so none of them can write back a config missing another's slot.
class ConfigLock {
 public:
  explicit ConfigLock(const std::string& cipherdir);
  int dirfd() const { return dir_.get(); }
  // Always reload after locking: the config may have changed since preflight().
  format::VolumeConfig load() const;
  // Atomic replace (VolumeConfig::save: temp, fsync, rename, fsync dir) after removing temp files that an
  // interrupted veilkey left behind.
  void save(const format::VolumeConfig& cfg) const;

 private:
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
