// Name transform: deterministic authenticated encryption of file names under their directory's IV.
//
//   padded  = name | PKCS#7 padding to a multiple of 16 bytes   (hides exact lengths)
//   tag     = BLAKE2b-128(key = name MAC key, dir IV | padded)   (SIV: the MAC is also the nonce)
//   ct      = XChaCha20(name encryption key, nonce = tag | "veilname", padded)
//   encoded = base64url(tag | ct), no padding
//
// Equal names in one directory encrypt equally (lookups need no listing); in different directories they
// differ, and a name moved to another directory fails to authenticate there.
// An encoded name longer than 255 bytes is stored as "veilfs.longname.<base64url(BLAKE2b-256(encoded))>"
// with a sidecar "<that>.name" holding the encoded name.
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
  static bool needs_long_name(std::string_view encoded) { return encoded.size() > format::kMaxBackingNameSize; }
  static std::string long_name_for(std::string_view encoded);
  static std::string sidecar_for(std::string_view long_name) {
    return std::string(long_name) + std::string(format::kLongNameSuffix);
  }
  // Backing name under which the encoded name is stored (itself, or its hashed long name).
  static std::string backing_name(std::string_view encoded) {
    return needs_long_name(encoded) ? long_name_for(encoded) : std::string(encoded);
  }
  static bool is_long_name(std::string_view backing);  // veilfs.longname.<hash>, not the sidecar
  static bool is_reserved(std::string_view backing);   // anything veilfs keeps for itself

 private:
  Siv siv_;
  SecretBytes iv_key_;
};

}  // namespace veil
