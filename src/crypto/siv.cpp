#include "veilfs/crypto/siv.hpp"

#include <algorithm>
#include <array>

#include "veilfs/crypto/kdf.hpp"

namespace veil {

namespace {
constexpr std::array<uint8_t, 8> kNonceSuffix = {'v', 'e', 'i', 'l', 'n', 'a', 'm', 'e'};
std::array<uint8_t, 24> nonce_of(std::span<const uint8_t> tag) {
  std::array<uint8_t, 24> n{};
  std::copy(tag.begin(), tag.end(), n.begin());
  std::copy(kNonceSuffix.begin(), kNonceSuffix.end(), n.begin() + kSivTagSize);
  return n;
}
}  // namespace

Siv::Siv(const SecretBytes& key)
    : mac_key_(hkdf_sha256(key.span(), {}, "veilfs v1 siv mac", 32)),
      enc_key_(hkdf_sha256(key.span(), {}, "veilfs v1 siv enc", 32)) {}

std::vector<uint8_t> Siv::seal(std::span<const uint8_t> ad, std::span<const uint8_t> plain) const {
  std::vector<uint8_t> out(kSivTagSize + plain.size());
  blake2b_keyed(std::span(out).subspan(0, kSivTagSize), mac_key_.span(), {ad, plain});
  auto nonce = nonce_of(std::span(out).subspan(0, kSivTagSize));
  xchacha20_xor(std::span(out).subspan(kSivTagSize), plain, nonce, enc_key_.span());
  return out;
}

std::optional<std::vector<uint8_t>> Siv::open(std::span<const uint8_t> ad, std::span<const uint8_t> sealed) const {
  if (sealed.size() < kSivTagSize) return std::nullopt;
  auto tag = sealed.subspan(0, kSivTagSize);
  std::vector<uint8_t> plain(sealed.size() - kSivTagSize);
  xchacha20_xor(plain, sealed.subspan(kSivTagSize), nonce_of(tag), enc_key_.span());
  std::array<uint8_t, kSivTagSize> expect{};
  blake2b_keyed(expect, mac_key_.span(), {ad, plain});
  if (!constant_time_equal(expect, tag)) {
    secure_wipe(plain);
    return std::nullopt;
  }
  return plain;
}

}  // namespace veil
