// Where a passphrase or key comes from, shared by veilfs and veilkey (and anything else that unlocks a volume).
// Order of precedence: key file, pass file, external program, standard input when it is not a terminal,
// and the terminal itself (no echo).
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
};

// Throws veil::Error(InvalidArgument) for an empty passphrase, an unreadable file or a failing program.
// With confirm, a terminal prompt asks twice and the two must match.
SecretBytes read_secret(const SecretSource& src, std::string_view prompt, bool confirm = false);

// Whether stdin is a terminal (interactive prompts are only allowed then).
bool stdin_is_terminal();

}  // namespace veil::cli
