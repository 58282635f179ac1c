#include "veilfs/crypto/kdf.hpp"

#include <sodium.h>

#include <algorithm>
#include <cstring>

#include "veilfs/crypto/sodium.hpp"
#include "veilfs/util/error.hpp"

namespace veil {

SecretBytes hkdf_sha256(std::span<const uint8_t> ikm, std::span<const uint8_t> salt, std::span<const uint8_t> info,
                        size_t out_len) {
  ensure_sodium();
  constexpr size_t kHash = crypto_auth_hmacsha256_BYTES;
  if (out_len == 0 || out_len > 255 * kHash) throw_invalid("HKDF output length out of range");
  // Extract: PRK = HMAC(salt, IKM); an empty salt means HashLen zero bytes (RFC 5869 2.2).
  uint8_t zero_salt[kHash] = {};
  if (salt.empty()) salt = zero_salt;
  SecretBytes prk(kHash);
  crypto_auth_hmacsha256_state st;
  crypto_auth_hmacsha256_init(&st, salt.data(), salt.size());
  crypto_auth_hmacsha256_update(&st, ikm.data(), ikm.size());
  crypto_auth_hmacsha256_final(&st, prk.data());
  // Expand: T(i) = HMAC(PRK, T(i-1) | info | i).
  SecretBytes out(out_len);
  SecretBytes t(kHash);
  size_t done = 0;
  for (uint8_t i = 1; done < out_len; ++i) {
    crypto_auth_hmacsha256_init(&st, prk.data(), prk.size());
    if (i > 1) crypto_auth_hmacsha256_update(&st, t.data(), kHash);
    crypto_auth_hmacsha256_update(&st, info.data(), info.size());
    crypto_auth_hmacsha256_update(&st, &i, 1);
    crypto_auth_hmacsha256_final(&st, t.data());
    size_t n = std::min(kHash, out_len - done);
    std::memcpy(out.data() + done, t.data(), n);
    done += n;
  }
  sodium_memzero(&st, sizeof st);
  return out;
}

SecretBytes hkdf_sha256(std::span<const uint8_t> ikm, std::span<const uint8_t> salt, std::string_view label,
                        size_t out_len) {
  return hkdf_sha256(ikm, salt, {reinterpret_cast<const uint8_t*>(label.data()), label.size()}, out_len);
}

void blake2b_keyed(std::span<uint8_t> out, std::span<const uint8_t> key,
                   std::initializer_list<std::span<const uint8_t>> parts) {
  ensure_sodium();
  crypto_generichash_state st;
  crypto_generichash_init(&st, key.data(), key.size(), out.size());
  for (auto p : parts) crypto_generichash_update(&st, p.data(), p.size());
  crypto_generichash_final(&st, out.data(), out.size());
  sodium_memzero(&st, sizeof st);
}

void blake2b(std::span<uint8_t> out, std::initializer_list<std::span<const uint8_t>> parts) {
  blake2b_keyed(out, {}, parts);
}

void sha256(std::span<uint8_t, 32> out, std::initializer_list<std::span<const uint8_t>> parts) {
  ensure_sodium();
  crypto_hash_sha256_state st;
  crypto_hash_sha256_init(&st);
  for (auto p : parts)
    if (!p.empty()) crypto_hash_sha256_update(&st, p.data(), p.size());
  crypto_hash_sha256_final(&st, out.data());
}

void xchacha20_xor(std::span<uint8_t> out, std::span<const uint8_t> in, std::span<const uint8_t> nonce24,
                   std::span<const uint8_t> key32) {
  ensure_sodium();
  if (nonce24.size() != crypto_stream_xchacha20_NONCEBYTES || key32.size() != crypto_stream_xchacha20_KEYBYTES ||
      out.size() < in.size())
    throw_invalid("xchacha20: bad sizes");
  crypto_stream_xchacha20_xor(out.data(), in.data(), in.size(), nonce24.data(), key32.data());
}

SecretBytes argon2id(std::span<const uint8_t> secret, std::span<const uint8_t> salt, const Argon2Params& p) {
  ensure_sodium();
  if (salt.size() != crypto_pwhash_SALTBYTES) throw_invalid("argon2id salt must be 16 bytes");
  if (p.opslimit < kArgonMinOps || p.opslimit > kArgonMaxOps || p.memlimit < kArgonMinMem || p.memlimit > kArgonMaxMem)
    throw_invalid("argon2id parameters out of the accepted range");
  SecretBytes out(32);
  // crypto_pwhash declares its password pointer non-null; an empty secret (an empty key file, an empty line on
  // stdin) has none, and passing it would be undefined behaviour rather than a wrong-passphrase error.
  static const char kEmpty = 0;
  const char* pw = secret.empty() ? &kEmpty : reinterpret_cast<const char*>(secret.data());
  if (crypto_pwhash(out.data(), out.size(), pw, secret.size(), salt.data(), p.opslimit, p.memlimit,
                    crypto_pwhash_ALG_ARGON2ID13) != 0)
    throw Error(ErrorKind::Io, ENOMEM, "argon2id: out of memory");
  return out;
}

bool constant_time_equal(std::span<const uint8_t> a, std::span<const uint8_t> b) {
  ensure_sodium();
  return a.size() == b.size() && (a.empty() || sodium_memcmp(a.data(), b.data(), a.size()) == 0);
}

void secure_wipe(std::span<uint8_t> buf) { sodium_memzero(buf.data(), buf.size()); }

}  // namespace veil
