// Deterministic authenticated encryption, SIV-style, from libsodium 1.0.18 primitives (it has no AES-SIV):
//   tag = BLAKE2b-128(key = mac key, ad | plaintext);  ct = XChaCha20(enc key, nonce = tag | "veilname", plaintext)
//   sealed = tag | ct
// ad must have a fixed length for a given use (the directory IV), so that (ad, plaintext) is unambiguous.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "veilfs/crypto/secret.hpp"

namespace veil {

constexpr size_t kSivTagSize = 16;

class Siv {
 public:
  explicit Siv(const SecretBytes& key);  // 32-byte key; MAC and encryption keys are derived from it
  std::vector<uint8_t> seal(std::span<const uint8_t> ad, std::span<const uint8_t> plain) const;
  std::optional<std::vector<uint8_t>> open(std::span<const uint8_t> ad, std::span<const uint8_t> sealed) const;

 private:
  SecretBytes mac_key_, enc_key_;
};

}  // namespace veil
