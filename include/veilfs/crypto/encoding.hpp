// Base64url without padding (RFC 4648 section 5): names on disk, key material in the config.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace veil {
std::string base64url_encode(std::span<const uint8_t> bin);
// nullopt on any invalid character or trailing bits; never throws on hostile input.
std::optional<std::vector<uint8_t>> base64url_decode(std::string_view text);
inline size_t base64url_encoded_size(size_t n) { return (n * 4 + 2) / 3; }

std::string hex_encode(std::span<const uint8_t> bin);
std::optional<std::vector<uint8_t>> hex_decode(std::string_view text);
}  // namespace veil
