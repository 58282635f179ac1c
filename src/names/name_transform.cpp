#include "veilfs/names/name_transform.hpp"

#include <algorithm>

#include "veilfs/crypto/encoding.hpp"
#include "veilfs/crypto/kdf.hpp"
#include "veilfs/util/error.hpp"

namespace veil {

using namespace format;

namespace {
std::span<const uint8_t> bytes_of(std::string_view s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }
}  // namespace

NameTransform::NameTransform(const SecretBytes& names_key)
    : siv_(names_key), iv_key_(hkdf_sha256(names_key.span(), {}, "veilfs v1 dir iv derivation", 32)) {}

void NameTransform::validate_plain_name(std::string_view plain) {
  if (plain.size() > kMaxPlainNameSize) throw Error(ErrorKind::NameTooLong, ENAMETOOLONG, "name too long");
  if (plain.empty() || plain == "." || plain == ".." || plain.find('/') != std::string_view::npos ||
      plain.find('\0') != std::string_view::npos)
    throw_invalid("invalid file name");
}

std::string NameTransform::encrypt(const DirIv& iv, std::string_view plain) const {
  validate_plain_name(plain);
  std::vector<uint8_t> padded(plain.begin(), plain.end());
  size_t pad = kNamePadQuantum - plain.size() % kNamePadQuantum;
  padded.insert(padded.end(), pad, static_cast<uint8_t>(pad));
  return base64url_encode(siv_.seal(iv, padded));
}

std::optional<std::string> NameTransform::decrypt(const DirIv& iv, std::string_view encoded) const {
  // Bound the work on hostile input: no valid name encodes to more than this.
  if (encoded.empty() || encoded.size() > base64url_encoded_size(kSivTagSize + kMaxPlainNameSize + kNamePadQuantum))
    return std::nullopt;
  auto sealed = base64url_decode(encoded);
  if (!sealed || sealed->size() < kSivTagSize + kNamePadQuantum || (sealed->size() - kSivTagSize) % kNamePadQuantum)
    return std::nullopt;
  auto padded = siv_.open(iv, *sealed);
  if (!padded) return std::nullopt;
  uint8_t pad = padded->back();
  if (pad == 0 || pad > kNamePadQuantum || pad > padded->size()) return std::nullopt;
  if (!std::all_of(padded->end() - pad, padded->end(), [pad](uint8_t b) { return b == pad; })) return std::nullopt;
  std::string name(padded->begin(), padded->end() - pad);
  try {
    validate_plain_name(name);
  } catch (const Error&) {
    return std::nullopt;
  }
  return name;
}

DirIv NameTransform::derive_child_iv(const DirIv& parent, std::string_view encoded_name) const {
  DirIv iv{};
  blake2b_keyed(iv, iv_key_.span(), {parent, bytes_of(encoded_name)});
  return iv;
}

}  // namespace veil
