#include "veilfs/names/link_codec.hpp"

#include "veilfs/crypto/encoding.hpp"
#include "veilfs/crypto/kdf.hpp"
#include "veilfs/crypto/random.hpp"
#include "veilfs/format/constants.hpp"

namespace veil {

namespace {
constexpr std::string_view kLinkAad = "veilfs symlink v1";
constexpr std::string_view kXattrAad = "veilfs xattr v1";
constexpr size_t kNonce = 24;
std::span<const uint8_t> bytes_of(std::string_view s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }

std::vector<uint8_t> seal(const Aead& aead, std::span<const uint8_t> aad, std::span<const uint8_t> plain) {
  std::vector<uint8_t> out(kNonce + plain.size() + kAeadTagSize);
  random_fill(std::span(out).subspan(0, kNonce));
  aead.encrypt(std::span(out).subspan(kNonce), plain, std::span(out).subspan(0, kNonce), aad);
  return out;
}
std::optional<std::vector<uint8_t>> open(const Aead& aead, std::span<const uint8_t> aad,
                                         std::span<const uint8_t> sealed) {
  if (sealed.size() < kNonce + kAeadTagSize) return std::nullopt;
  std::vector<uint8_t> plain(sealed.size() - kNonce - kAeadTagSize);
  if (!aead.decrypt(plain, sealed.subspan(kNonce), sealed.subspan(0, kNonce), aad)) return std::nullopt;
  return plain;
}
}  // namespace

LinkCodec::LinkCodec(const SecretBytes& key) : aead_(CipherId::XChaCha20Poly1305, key.span()) {}

std::string LinkCodec::encrypt(std::string_view target) const {
  return base64url_encode(seal(aead_, bytes_of(kLinkAad), bytes_of(target)));
}

std::string LinkCodec::encrypt_with_nonce(std::string_view target, std::span<const uint8_t, 24> nonce) const {
  std::vector<uint8_t> out(kNonce + target.size() + kAeadTagSize);
  std::copy(nonce.begin(), nonce.end(), out.begin());
  aead_.encrypt(std::span(out).subspan(kNonce), bytes_of(target), std::span(out).subspan(0, kNonce),
                bytes_of(kLinkAad));
  return base64url_encode(out);
}

std::optional<std::string> LinkCodec::decrypt(std::string_view stored) const {
  if (stored.size() > format::kMaxStoredLinkSize) return std::nullopt;  // bound hostile input
  auto sealed = base64url_decode(stored);
  if (!sealed) return std::nullopt;
  auto plain = open(aead_, bytes_of(kLinkAad), *sealed);
  if (!plain) return std::nullopt;
  return std::string(plain->begin(), plain->end());
}

XattrCodec::XattrCodec(const SecretBytes& key)
    : siv_(key), aead_(CipherId::XChaCha20Poly1305, hkdf_sha256(key.span(), {}, "veilfs v1 xattr value", 32).span()) {}

std::optional<std::string> XattrCodec::encrypt_name(std::string_view plain) const {
  if (plain.substr(0, format::kXattrUserPrefix.size()) != format::kXattrUserPrefix ||
      plain.size() == format::kXattrUserPrefix.size())
    return std::nullopt;
  // Only the part after "user." is encrypted; it may contain any byte but NUL, including '/'.
  std::string_view rest = plain.substr(format::kXattrUserPrefix.size());
  std::vector<uint8_t> padded(rest.begin(), rest.end());
  size_t pad = format::kNamePadQuantum - rest.size() % format::kNamePadQuantum;
  padded.insert(padded.end(), pad, static_cast<uint8_t>(pad));
  static const DirIv kZeroIv{};
  return std::string(format::kXattrBackingPrefix) + base64url_encode(siv_.seal(kZeroIv, padded));
}

std::optional<std::string> XattrCodec::decrypt_name(std::string_view backing) const {
  if (backing.substr(0, format::kXattrBackingPrefix.size()) != format::kXattrBackingPrefix) return std::nullopt;
  auto sealed = base64url_decode(backing.substr(format::kXattrBackingPrefix.size()));
  if (!sealed || sealed->size() < kSivTagSize + format::kNamePadQuantum ||
      (sealed->size() - kSivTagSize) % format::kNamePadQuantum)
    return std::nullopt;
  static const DirIv kZeroIv{};
  auto padded = siv_.open(kZeroIv, *sealed);
  if (!padded) return std::nullopt;
  uint8_t pad = padded->back();
  if (pad == 0 || pad > format::kNamePadQuantum || pad > padded->size()) return std::nullopt;
  for (size_t i = padded->size() - pad; i < padded->size(); ++i)
    if ((*padded)[i] != pad) return std::nullopt;
  return std::string(format::kXattrUserPrefix) + std::string(padded->begin(), padded->end() - pad);
}

std::vector<uint8_t> XattrCodec::encrypt_value(std::string_view backing_name, std::span<const uint8_t> value) const {
  std::vector<uint8_t> aad(kXattrAad.begin(), kXattrAad.end());
  aad.insert(aad.end(), backing_name.begin(), backing_name.end());
  return seal(aead_, aad, value);
}

std::optional<std::vector<uint8_t>> XattrCodec::decrypt_value(std::string_view backing_name,
                                                              std::span<const uint8_t> stored) const {
  std::vector<uint8_t> aad(kXattrAad.begin(), kXattrAad.end());
  aad.insert(aad.end(), backing_name.begin(), backing_name.end());
  return open(aead_, aad, stored);
}

}  // namespace veil
