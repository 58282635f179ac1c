// Name transform: deterministic authenticated encryption of file names under their directory's IV.
//
//   padded  = name | PKCS#7 padding to a multiple of 16 bytes   (hides exact lengths)
//   tag     = BLAKE2b-128(key = name MAC key, dir IV | padded)   (SIV: the MAC is also the nonce)
//   ct      = XChaCha20(name encryption key, nonce = tag | "veilname", padded)
//   encoded = base64url(tag | ct), no padding
//
// Equal names in one directory encrypt equally (lookups need no listing); in different directories they
// differ, and a name moved to another directory fails to authenticate there.
// How an encoded name is stored in the cipher dir (long names, sidecars) is the layout's business
// (veilfs/layout/cipher_dir.hpp).
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>

#include "veilfs/crypto/secret.hpp"
#include "veilfs/crypto/siv.hpp"
#include "veilfs/format/constants.hpp"

namespace veil {

using DirIv = std::array<uint8_t, format::kDirIvSize>;

class NameTransform {
 public:
  explicit NameTransform(const SecretBytes& names_key);

  // Throws NameTooLong for names over 255 bytes, InvalidArgument for "", ".", ".." or names with '/' or NUL.
  std::string encrypt(const DirIv& iv, std::string_view plain) const;
  // nullopt for anything that is not a valid encryption of a valid name under this IV.
  std::optional<std::string> decrypt(const DirIv& iv, std::string_view encoded) const;

  // IV of a new directory, from its parent's IV and its own encoded name. Deterministic, so that two
  // machines creating the same directory through a sync service agree; stored, so that a rename keeps it.
  DirIv derive_child_iv(const DirIv& parent, std::string_view encoded_name) const;

  static void validate_plain_name(std::string_view plain);

 private:
  Siv siv_;
  SecretBytes iv_key_;
};

}  // namespace veil
