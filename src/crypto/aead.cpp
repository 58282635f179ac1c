#include "veilfs/crypto/aead.hpp"

#include <sodium.h>

#include <cassert>

#include "veilfs/crypto/sodium.hpp"
#include "veilfs/util/error.hpp"

namespace veil {

std::string_view cipher_name(CipherId id) { return id == CipherId::Aes256Gcm ? "aes256gcm" : "xchacha20poly1305"; }

std::optional<CipherId> cipher_from_name(std::string_view name) {
  if (name == "aes256gcm") return CipherId::Aes256Gcm;
  if (name == "xchacha20poly1305") return CipherId::XChaCha20Poly1305;
  return std::nullopt;
}

CipherId fastest_cipher() { return aes256gcm_available() ? CipherId::Aes256Gcm : CipherId::XChaCha20Poly1305; }

Aead::Aead(CipherId id, std::span<const uint8_t> key) : id_(id) {
  ensure_sodium();
  if (key.size() != kAeadKeySize) throw_invalid("AEAD key must be 32 bytes");
  if (id == CipherId::Aes256Gcm) {
    if (!aes256gcm_available())
      throw Error(ErrorKind::Unsupported, ENOTSUP, "AES-256-GCM needs AES-NI and PCLMUL, which this CPU lacks");
    state_ = SecretBytes(crypto_aead_aes256gcm_statebytes());
    crypto_aead_aes256gcm_beforenm(reinterpret_cast<crypto_aead_aes256gcm_state*>(state_.data()), key.data());
  } else {
    state_ = SecretBytes(key);
  }
}

Aead::~Aead() = default;
Aead::Aead(Aead&&) noexcept = default;
Aead& Aead::operator=(Aead&&) noexcept = default;

void Aead::encrypt(std::span<uint8_t> out, std::span<const uint8_t> plain, std::span<const uint8_t> nonce,
                   std::span<const uint8_t> aad) const {
  assert(out.size() >= plain.size() + kAeadTagSize);
  assert(nonce.size() == nonce_size());
  unsigned long long clen = 0;
  if (id_ == CipherId::Aes256Gcm) {
    crypto_aead_aes256gcm_encrypt_afternm(out.data(), &clen, plain.data(), plain.size(), aad.data(), aad.size(),
                                          nullptr, nonce.data(),
                                          reinterpret_cast<const crypto_aead_aes256gcm_state*>(state_.data()));
  } else {
    crypto_aead_xchacha20poly1305_ietf_encrypt(out.data(), &clen, plain.data(), plain.size(), aad.data(), aad.size(),
                                               nullptr, nonce.data(), state_.data());
  }
}

bool Aead::decrypt(std::span<uint8_t> out, std::span<const uint8_t> in, std::span<const uint8_t> nonce,
                   std::span<const uint8_t> aad) const {
  if (in.size() < kAeadTagSize || nonce.size() != nonce_size()) return false;
  assert(out.size() >= in.size() - kAeadTagSize);
  unsigned long long mlen = 0;
  int rc;
  if (id_ == CipherId::Aes256Gcm) {
    rc = crypto_aead_aes256gcm_decrypt_afternm(out.data(), &mlen, nullptr, in.data(), in.size(), aad.data(), aad.size(),
                                               nonce.data(),
                                               reinterpret_cast<const crypto_aead_aes256gcm_state*>(state_.data()));
  } else {
    rc = crypto_aead_xchacha20poly1305_ietf_decrypt(out.data(), &mlen, nullptr, in.data(), in.size(), aad.data(),
                                                    aad.size(), nonce.data(), state_.data());
  }
  return rc == 0;
}

}  // namespace veil
