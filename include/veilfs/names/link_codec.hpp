// Symlink targets and extended attributes: randomised authenticated encryption (XChaCha20-Poly1305).
//
//   symlink target  = base64url(nonce(24) | ct | tag(16)), AAD "veilfs symlink v1"
//   xattr name      = "user.veilfs." + base64url(SIV of the full plain name under a fixed all-zero IV,
//                      with the xattr key), so that lookups by name are deterministic
//   xattr value     = nonce(24) | ct | tag(16), AAD "veilfs xattr v1" | backing xattr name
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "veilfs/crypto/aead.hpp"
#include "veilfs/crypto/siv.hpp"
#include "veilfs/names/name_transform.hpp"

namespace veil {

class LinkCodec {
 public:
  explicit LinkCodec(const SecretBytes& link_key);
  std::string encrypt(std::string_view target) const;
  // The same with a nonce the caller chose (reverse mode's, derived from the target): never reuse one for
  // another target.
  std::string encrypt_with_nonce(std::string_view target, std::span<const uint8_t, 24> nonce) const;
  std::optional<std::string> decrypt(std::string_view stored) const;

 private:
  Aead aead_;
};

class XattrCodec {
 public:
  explicit XattrCodec(const SecretBytes& xattr_key);
  // nullopt if the name is not in the user namespace (veilfs stores only user.* attributes).
  std::optional<std::string> encrypt_name(std::string_view plain) const;
  std::optional<std::string> decrypt_name(std::string_view backing) const;
  std::vector<uint8_t> encrypt_value(std::string_view backing_name, std::span<const uint8_t> value) const;
  std::optional<std::vector<uint8_t>> decrypt_value(std::string_view backing_name,
                                                    std::span<const uint8_t> stored) const;
  static constexpr size_t kValueOverhead = 24 + kAeadTagSize;

 private:
  Siv siv_;
  Aead aead_;
};

}  // namespace veil
