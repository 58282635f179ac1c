#include "veilfs/format/recovery_code.hpp"

#include <array>
#include <string>

#include "veilfs/crypto/kdf.hpp"
#include "veilfs/format/constants.hpp"

namespace veil::format {

namespace {

constexpr std::string_view kAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";  // Crockford: no I, L, O, U
constexpr std::string_view kChecksumLabel = "veilfs recovery code v1";
constexpr size_t kDataPerGroup = kRecoveryGroupChars - 1;
constexpr size_t kPayloadBytes = kMasterKeySize + 2;  // key + 14 checksum bits (2 bits of padding)
constexpr uint8_t kInvalid = 0xff;

static_assert(kRecoveryGroups * kDataPerGroup * 5 == kMasterKeySize * 8 + 14, "payload must be key + 14 bits");

// GF(2^5) with the primitive polynomial x^5 + x^2 + 1: alpha = 2 generates all 31 non-zero elements.
uint8_t gf32_mul(uint8_t a, uint8_t b) {
  uint8_t r = 0;
  for (int i = 0; i < 5; ++i) {
    if (b & 1) r ^= a;
    b >>= 1;
    a <<= 1;
    if (a & 0x20) a ^= 0x25;
  }
  return r;
}

// Weight of position i in a group: alpha^(6 - i), so the check symbol (i = 6) has weight 1. Seven distinct
// non-zero weights: a changed symbol changes the sum; two swapped neighbours change it by
// (w_i + w_{i+1})(a + b) != 0.
uint8_t weight(size_t i) {
  uint8_t w = 1;
  for (size_t k = 0; k < kRecoveryGroupChars - 1 - i; ++k) w = gf32_mul(w, 2);
  return w;
}

// Sum of the weighted data symbols plus the group number: the check symbol that makes the total equal the
// group number (addition in GF(2^5) is XOR, so it is its own inverse).
uint8_t group_check(const uint8_t* data, size_t group) {
  uint8_t sum = static_cast<uint8_t>(group + 1);
  for (size_t i = 0; i < kDataPerGroup; ++i) sum ^= gf32_mul(weight(i), data[i]);
  return sum;
}

uint8_t symbol_of(char c) {
  if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  if (c == 'O') c = '0';
  if (c == 'I' || c == 'L') c = '1';
  for (size_t i = 0; i < kAlphabet.size(); ++i)
    if (kAlphabet[i] == c) return static_cast<uint8_t>(i);
  return kInvalid;
}

void payload_checksum(const SecretBytes& key, uint8_t out[2]) {
  std::array<uint8_t, 32> h{};
  blake2b(h, {std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(kChecksumLabel.data()), kChecksumLabel.size()),
              key.span()});
  out[0] = h[0];
  out[1] = static_cast<uint8_t>(h[1] & 0xfc);
}

std::string group_list(const std::vector<unsigned>& groups) {
  std::string s;
  for (size_t i = 0; i < groups.size(); ++i) {
    if (i) s += i + 1 == groups.size() ? " and " : ", ";
    s += std::to_string(groups[i]);
  }
  return s;
}

}  // namespace

SecretBytes encode_recovery_code(const SecretBytes& master) {
  if (master.size() != kMasterKeySize) throw_invalid("recovery code: the master key has the wrong size");
  SecretBytes payload(kPayloadBytes);
  std::copy(master.data(), master.data() + kMasterKeySize, payload.data());
  payload_checksum(master, payload.data() + kMasterKeySize);

  SecretBytes text(kRecoveryCodeTextSize);
  SecretBytes data(kDataPerGroup);
  size_t bit = 0, pos = 0;
  for (size_t g = 0; g < kRecoveryGroups; ++g) {
    if (g) text.data()[pos++] = '-';
    for (size_t i = 0; i < kDataPerGroup; ++i) {
      uint8_t v = 0;
      for (int b = 0; b < 5; ++b, ++bit)
        v = static_cast<uint8_t>((v << 1) | ((payload.data()[bit / 8] >> (7 - bit % 8)) & 1));
      data.data()[i] = v;
      text.data()[pos++] = static_cast<uint8_t>(kAlphabet[v]);
    }
    text.data()[pos++] = static_cast<uint8_t>(kAlphabet[group_check(data.data(), g)]);
  }
  return text;
}

SecretBytes decode_recovery_code(std::string_view text) {
  SecretBytes symbols(kRecoveryCodeSymbols);
  size_t n = 0;
  bool bad_char = false;
  std::vector<unsigned> bad_char_groups;
  for (char c : text) {
    if (c == '-' || c == ' ' || c == '\t' || c == '\n' || c == '\r') continue;
    uint8_t v = symbol_of(c);
    if (n < kRecoveryCodeSymbols) {
      if (v == kInvalid) {
        unsigned g = static_cast<unsigned>(n / kRecoveryGroupChars) + 1;
        if (bad_char_groups.empty() || bad_char_groups.back() != g) bad_char_groups.push_back(g);
        bad_char = true;
        v = 0;
      }
      symbols.data()[n] = v;
    }
    ++n;
  }
  if (n != kRecoveryCodeSymbols)
    throw RecoveryCodeError("the recovery code has " + std::to_string(n) + " characters, expected " +
                                std::to_string(kRecoveryCodeSymbols) + " (" + std::to_string(kRecoveryGroups) +
                                " groups of " + std::to_string(kRecoveryGroupChars) + ")",
                            {});
  if (bad_char)
    throw RecoveryCodeError(
        "the recovery code has a character that is not in its alphabet in group " + group_list(bad_char_groups),
        bad_char_groups);

  std::vector<unsigned> bad_groups;
  for (size_t g = 0; g < kRecoveryGroups; ++g) {
    const uint8_t* grp = symbols.data() + g * kRecoveryGroupChars;
    if (group_check(grp, g) != grp[kDataPerGroup]) bad_groups.push_back(static_cast<unsigned>(g + 1));
  }
  if (!bad_groups.empty())
    throw RecoveryCodeError(std::string("the recovery code has a typo in group") +
                                (bad_groups.size() > 1 ? "s " : " ") + group_list(bad_groups) +
                                " (groups counted from 1, left to right)",
                            bad_groups);

  SecretBytes payload(kPayloadBytes);
  std::fill(payload.data(), payload.data() + kPayloadBytes, uint8_t{0});
  size_t bit = 0;
  for (size_t g = 0; g < kRecoveryGroups; ++g)
    for (size_t i = 0; i < kDataPerGroup; ++i) {
      uint8_t v = symbols.data()[g * kRecoveryGroupChars + i];
      for (int b = 4; b >= 0; --b, ++bit)
        if ((v >> b) & 1) payload.data()[bit / 8] |= static_cast<uint8_t>(0x80 >> (bit % 8));
    }
  SecretBytes master(std::span<const uint8_t>(payload.data(), kMasterKeySize));
  uint8_t expect[2];
  payload_checksum(master, expect);
  if (expect[0] != payload.data()[kMasterKeySize] || expect[1] != payload.data()[kMasterKeySize + 1])
    throw RecoveryCodeError(
        "the recovery code's checksum does not match: groups are out of order or one group has several typos", {});
  return master;
}

}  // namespace veil::format
