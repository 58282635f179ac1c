// Where a passphrase or key comes from, shared by veilfs and veilkey (and anything else that unlocks a volume).
// At most one of key file, pass file and external program may be given; without any, standard input when it is
// not a terminal, and otherwise the terminal itself (no echo).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "veilfs/crypto/secret.hpp"

namespace veil::cli {

struct SecretSource {
  std::optional<std::string> keyfile;   // whole file contents are the secret (binary-safe)
  std::optional<std::string> passfile;  // first line, without its newline
  std::optional<std::string> extpass;   // run with /bin/sh -c; first line of its stdout
  // How this command line spells the options, and what the secret is called, for messages only.
  std::string keyfile_option = "--keyfile";
  std::string passfile_option = "--passfile";
  std::string extpass_option = "--extpass";
  std::string what = "passphrase";

  // The option names of veilkey's new secret (--new-keyfile, ...).
  void name_as_new();
};

// Throws veil::Error(InvalidArgument) naming both options when more than one source is given.
void check_single_source(const SecretSource& src);

// Throws veil::Error(InvalidArgument), with a message naming the option and the file and saying why, for
// conflicting sources, an empty passphrase or key file, an unreadable file or a failing program.
// With confirm, a terminal prompt asks twice and the two must match (an empty first answer is refused at once).
SecretBytes read_secret(const SecretSource& src, std::string_view prompt, bool confirm = false);

// Whether stdin is a terminal (interactive prompts are only allowed then).
bool stdin_is_terminal();

}  // namespace veil::cli
