// veilkey: create veilfs volumes and look after their keys. See `veilkey --help` and keytool/README.md.
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string_view>

#include "keytool.hpp"
#include "veilfs/cli/exit_codes.hpp"
#include "veilfs/cli/version.hpp"

namespace {

using namespace veil::keytool;

struct Command {
  std::string_view name;
  int (*run)(const Args&);
};
constexpr Command kCommands[] = {
    {"init", cmd_init}, {"passwd", cmd_passwd},         {"slot", cmd_slot},
    {"info", cmd_info}, {"export-key", cmd_export_key}, {"recover", cmd_recover},
};

constexpr std::string_view kUsage = R"(veilkey - key management for veilfs volumes

Usage: veilkey COMMAND CIPHERDIR [options]       (veilkey COMMAND --help for each command's options)
       veilkey --version                         (versions of veilkey, the format, libsodium, libfuse)

Commands:
  init CIPHERDIR          create a new volume in an empty directory and print its recovery code
  passwd CIPHERDIR        change the passphrase (or key file) of the slot that the current secret opens
  slot list CIPHERDIR     list the key slots (no secret needed)
  slot add CIPHERDIR      add a passphrase or key-file slot (needs an existing secret)
  slot remove CIPHERDIR   remove a slot: --slot ID, or the one the given secret opens (never the last one)
  info CIPHERDIR          format version, cipher, block size, features, slots and KDF parameters (no secret)
  export-key CIPHERDIR    print the recovery code (needs the passphrase)
  recover CIPHERDIR       add a new passphrase slot using the recovery code

Secrets: --passfile FILE, --extpass CMD or --keyfile FILE (at most one: two are refused); otherwise one line of
standard input when it is not a terminal; otherwise a prompt. A new secret (init, passwd, slot add, recover):
--new-passfile, --new-extpass, --new-keyfile or --new-random-keyfile (veilkey creates the key file: 256 random
bits, so the slot gets the minimum KDF cost; init spells these --passfile/--extpass/--keyfile/--random-keyfile);
otherwise the NEXT line of standard input; otherwise a prompt, asked twice. --kdf-memory takes bytes or sizes
such as 64M and 1G.

Examples:
  veilkey init ~/vault.enc                        # asks for a passphrase twice, prints the recovery code
  veilkey slot add ~/vault.enc --new-random-keyfile ~/usb/vault.key
  printf '%s\n%s\n' "$OLD" "$NEW" | veilkey passwd ~/vault.enc
  veilkey recover ~/vault.enc --recovery-code-file code.txt --new-passfile new.txt

Exit codes:
   0  success                                  13  config corrupt or tampered with
   1  any other error                          14  I/O error (including a full disk)
   2  bad command line, also conflicting or     16  refused: init on a non-empty dir, removing the last slot,
      unusable secret options (missing,            too many slots
      unreadable or empty file, failing CMD)   17  recovery code with a typo (checksum mismatch)
  10  wrong passphrase or key file
  11  not a veilfs volume (also: the directory
      does not exist)
  12  unsupported format version or feature
)";

int dispatch(const Args& args) {
  if (args.empty()) {
    std::cerr << kUsage;
    return veil::cli::kExitUsage;
  }
  std::string_view name = args[0];
  if (name == "--help" || name == "-h" || name == "help") {
    std::cout << kUsage;
    return veil::cli::kExitOk;
  }
  if (name == "--version" || name == "-V" || name == "version") {
    std::cout << veil::cli::version_text("veilkey", nullptr);
    return veil::cli::kExitOk;
  }
  for (const auto& c : kCommands) {
    if (c.name != name) continue;
    return c.run(Args(args.begin() + 1, args.end()));  // a recovery code typo: exit 17, from run_guarded
  }
  std::cerr << "veilkey: unknown command '" << name << "' (see veilkey --help)\n";
  return veil::cli::kExitUsage;
}

}  // namespace

int main(int argc, char** argv) {
  veil::disable_core_dumps();  // a core file would hold the master key
  install_test_hooks();
  Args args(argv + 1, argv + argc);
  return veil::cli::run_guarded("veilkey", [&] { return dispatch(args); });
}
