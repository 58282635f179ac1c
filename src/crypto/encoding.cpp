#include "veilfs/crypto/encoding.hpp"

#include <sodium.h>

#include "veilfs/crypto/sodium.hpp"

namespace veil {

std::string base64url_encode(std::span<const uint8_t> bin) {
  ensure_sodium();
  const int variant = sodium_base64_VARIANT_URLSAFE_NO_PADDING;
  std::string out(sodium_base64_ENCODED_LEN(bin.size(), variant), '\0');
  sodium_bin2base64(out.data(), out.size(), bin.data(), bin.size(), variant);
  out.resize(out.size() - 1);  // drop the NUL
  return out;
}

std::optional<std::vector<uint8_t>> base64url_decode(std::string_view text) {
  ensure_sodium();
  // Reject non-canonical encodings (length 1 mod 4, or stray low bits) so one name has one spelling.
  if (text.size() % 4 == 1) return std::nullopt;
  std::vector<uint8_t> out(text.size() * 3 / 4 + 1);
  size_t len = 0;
  const char* end = nullptr;
  if (sodium_base642bin(out.data(), out.size(), text.data(), text.size(), nullptr, &len, &end,
                        sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
    return std::nullopt;
  if (end != text.data() + text.size()) return std::nullopt;
  out.resize(len);
  if (base64url_encode(out) != text) return std::nullopt;
  return out;
}

std::string hex_encode(std::span<const uint8_t> bin) {
  ensure_sodium();
  std::string out(bin.size() * 2 + 1, '\0');
  sodium_bin2hex(out.data(), out.size(), bin.data(), bin.size());
  out.resize(bin.size() * 2);
  return out;
}

std::optional<std::vector<uint8_t>> hex_decode(std::string_view text) {
  ensure_sodium();
  if (text.size() % 2) return std::nullopt;
  if (text.empty()) return std::vector<uint8_t>{};  // sodium_hex2bin must not get a null output (found by fuzzing)
  std::vector<uint8_t> out(text.size() / 2);
  size_t len = 0;
  const char* end = nullptr;
  if (sodium_hex2bin(out.data(), out.size(), text.data(), text.size(), nullptr, &len, &end) != 0) return std::nullopt;
  if (end != text.data() + text.size() || len != out.size()) return std::nullopt;
  return out;
}

}  // namespace veil
