// Authenticated encryption with a fixed key: AES-256-GCM (needs AES-NI) or XChaCha20-Poly1305.
// Layout used everywhere: nonce | ciphertext | tag ("combined" mode: ciphertext and tag are contiguous).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "veilfs/crypto/secret.hpp"

namespace veil {

enum class CipherId { Aes256Gcm, XChaCha20Poly1305 };

std::string_view cipher_name(CipherId id);  // "aes256gcm", "xchacha20poly1305"
std::optional<CipherId> cipher_from_name(std::string_view name);
CipherId fastest_cipher();  // AES-256-GCM where the CPU accelerates it

constexpr size_t kAeadKeySize = 32;
constexpr size_t kAeadTagSize = 16;
constexpr size_t nonce_size(CipherId id) { return id == CipherId::Aes256Gcm ? 12 : 24; }

class Aead {
 public:
  // key must be kAeadKeySize bytes. Throws Unsupported if AES-256-GCM is requested without AES-NI.
  Aead(CipherId id, std::span<const uint8_t> key);
  ~Aead();
  Aead(const Aead&) = delete;
  Aead& operator=(const Aead&) = delete;
  Aead(Aead&&) noexcept;
  Aead& operator=(Aead&&) noexcept;

  CipherId id() const noexcept { return id_; }
  size_t nonce_size() const noexcept { return veil::nonce_size(id_); }
  static constexpr size_t tag_size() { return kAeadTagSize; }

  // out must hold plain.size() + tag_size() bytes: ciphertext followed by the tag.
  void encrypt(std::span<uint8_t> out, std::span<const uint8_t> plain, std::span<const uint8_t> nonce,
               std::span<const uint8_t> aad) const;
  // in = ciphertext | tag; out must hold in.size() - tag_size(). Returns false if authentication fails.
  [[nodiscard]] bool decrypt(std::span<uint8_t> out, std::span<const uint8_t> in, std::span<const uint8_t> nonce,
                             std::span<const uint8_t> aad) const;

 private:
  CipherId id_;
  SecretBytes state_;  // expanded AES-GCM state, or the raw XChaCha20 key
};

}  // namespace veil
