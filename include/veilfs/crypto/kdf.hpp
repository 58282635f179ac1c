// Key derivation: HKDF-SHA256 (RFC 5869, built on libsodium's HMAC-SHA256 since 1.0.18 lacks it),
// keyed BLAKE2b, and Argon2id for passphrases.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "veilfs/crypto/secret.hpp"

namespace veil {

// HKDF-Extract then Expand. info carries the purpose label (and a file ID for per-file keys).
SecretBytes hkdf_sha256(std::span<const uint8_t> ikm, std::span<const uint8_t> salt, std::span<const uint8_t> info,
                        size_t out_len);
SecretBytes hkdf_sha256(std::span<const uint8_t> ikm, std::span<const uint8_t> salt, std::string_view label,
                        size_t out_len);

// Keyed BLAKE2b of the concatenation of parts; out.size() between 16 and 64, key 16..64 bytes.
void blake2b_keyed(std::span<uint8_t> out, std::span<const uint8_t> key,
                   std::initializer_list<std::span<const uint8_t>> parts);
// Unkeyed BLAKE2b (checksums, long-name hashes).
void blake2b(std::span<uint8_t> out, std::initializer_list<std::span<const uint8_t>> parts);
// SHA-256 (32 bytes out) of the concatenation of parts: for interoperable digests such as test manifests.
void sha256(std::span<uint8_t, 32> out, std::initializer_list<std::span<const uint8_t>> parts);

// XChaCha20 keystream XOR (no authentication; the caller authenticates, e.g. SIV names).
void xchacha20_xor(std::span<uint8_t> out, std::span<const uint8_t> in, std::span<const uint8_t> nonce24,
                   std::span<const uint8_t> key32);

struct Argon2Params {
  uint64_t opslimit;
  uint64_t memlimit;  // bytes
};
// Bounds accepted on read; a hostile config must not make us allocate or spin without limit.
constexpr uint64_t kArgonMinOps = 1, kArgonMaxOps = 64;
constexpr uint64_t kArgonMinMem = 8192, kArgonMaxMem = uint64_t{4} << 30;
constexpr size_t kArgonSaltSize = 16;
// Default: about half a second on a 2-core machine of the baseline kind.
constexpr Argon2Params kArgonDefault{3, uint64_t{256} << 20};
// For tests only: fast, still Argon2id.
constexpr Argon2Params kArgonTesting{1, 8192};

SecretBytes argon2id(std::span<const uint8_t> secret, std::span<const uint8_t> salt, const Argon2Params& p);

bool constant_time_equal(std::span<const uint8_t> a, std::span<const uint8_t> b);
void secure_wipe(std::span<uint8_t> buf);

}  // namespace veil
