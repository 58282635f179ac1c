// Recovery code: the 32-byte master key written for a human to copy onto paper and type back in.
//
//   payload = master key (256 bits) | first 14 bits of BLAKE2b-256("veilfs recovery code v1" | key)
//   text    = 9 groups of 7 Crockford base32 characters joined by '-': 6 payload characters and 1 check character
//
// The check character makes the weighted sum of a group's 7 symbols in GF(32) equal to its group number, so any
// single wrong character and any swap of two neighbours inside a group is caught *and its group named*, and a
// group copied into the wrong position is caught too. The 14-bit whole-code checksum catches what slips past the
// groups (several typos in one group) with probability 1 - 2^-14. Input is forgiving: case, dashes and spaces are
// ignored, and O/I/L are read as 0/1/1 (Crockford's rule for the letters people confuse with digits).
#pragma once

#include <string_view>
#include <vector>

#include "veilfs/crypto/secret.hpp"
#include "veilfs/util/error.hpp"

namespace veil::format {

constexpr size_t kRecoveryGroups = 9;
constexpr size_t kRecoveryGroupChars = 7;  // 6 payload + 1 check
constexpr size_t kRecoveryCodeSymbols = kRecoveryGroups * kRecoveryGroupChars;
constexpr size_t kRecoveryCodeTextSize = kRecoveryCodeSymbols + kRecoveryGroups - 1;  // with dashes

// A recovery code that cannot be right. The message names the damaged groups (1-based), never the characters.
class RecoveryCodeError : public Error {
 public:
  RecoveryCodeError(const std::string& what, std::vector<unsigned> bad_groups)
      : Error(ErrorKind::InvalidArgument, EINVAL, what), bad_groups_(std::move(bad_groups)) {}
  const std::vector<unsigned>& bad_groups() const noexcept { return bad_groups_; }

 private:
  std::vector<unsigned> bad_groups_;
};

// master must be kMasterKeySize bytes. The text is returned in secure memory: it *is* the key.
SecretBytes encode_recovery_code(const SecretBytes& master);
// Returns the master key or throws RecoveryCodeError.
SecretBytes decode_recovery_code(std::string_view text);

}  // namespace veil::format
