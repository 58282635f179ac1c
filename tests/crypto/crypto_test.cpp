// Crypto primitives: HKDF against RFC 5869, canonical base64url, AEAD and SIV round trips and tamper detection.
#include <gtest/gtest.h>

#include <random>

#include "veilfs/crypto/aead.hpp"
#include "veilfs/crypto/encoding.hpp"
#include "veilfs/crypto/kdf.hpp"
#include "veilfs/crypto/random.hpp"
#include "veilfs/crypto/siv.hpp"
#include "veilfs/util/error.hpp"

namespace veil {
namespace {

std::vector<uint8_t> range(int lo, int hi) {
  std::vector<uint8_t> v;
  for (int i = lo; i < hi; ++i) v.push_back(static_cast<uint8_t>(i));
  return v;
}
std::string hex_of(const SecretBytes& s) { return hex_encode(s.span()); }

TEST(Hkdf, Rfc5869TestCase1) {
  auto okm = hkdf_sha256(std::vector<uint8_t>(22, 0x0b), range(0x00, 0x0d), range(0xf0, 0xfa), 42);
  EXPECT_EQ(hex_of(okm), "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865");
}

TEST(Hkdf, Rfc5869TestCase2LongInputs) {
  auto okm = hkdf_sha256(range(0x00, 0x50), range(0x60, 0xb0), range(0xb0, 0x100), 82);
  EXPECT_EQ(
      hex_of(okm),
      "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac7827271cb41c65e590e09da3275600c2f"
      "09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87");
}

TEST(Hkdf, Rfc5869TestCase3EmptySaltAndInfo) {
  auto okm = hkdf_sha256(std::vector<uint8_t>(22, 0x0b), {}, std::span<const uint8_t>{}, 42);
  EXPECT_EQ(hex_of(okm), "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8");
}

TEST(Hkdf, LabelsSeparateKeysAndLengthIsBounded) {
  auto ikm = std::vector<uint8_t>(32, 1);
  EXPECT_FALSE(hkdf_sha256(ikm, {}, "a", 32).equals(hkdf_sha256(ikm, {}, "b", 32).span()));
  EXPECT_THROW(hkdf_sha256(ikm, {}, "a", 0), Error);
  EXPECT_THROW(hkdf_sha256(ikm, {}, "a", 255 * 32 + 1), Error);
  EXPECT_EQ(hkdf_sha256(ikm, {}, "a", 255 * 32).size(), 255u * 32);
}

TEST(Sha256, KnownVectors) {
  std::array<uint8_t, 32> d{};
  sha256(d, {});
  EXPECT_EQ(hex_encode(d), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  const std::vector<uint8_t> ab = {'a', 'b'}, c = {'c'};
  sha256(d, {ab, c});  // parts are concatenated
  EXPECT_EQ(hex_encode(d), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Base64Url, RoundTripsEveryLength) {
  std::mt19937 rng(1);
  for (size_t n = 0; n < 100; ++n) {
    std::vector<uint8_t> v(n);
    for (auto& b : v) b = static_cast<uint8_t>(rng());
    std::string e = base64url_encode(v);
    EXPECT_EQ(e.size(), base64url_encoded_size(n));
    EXPECT_EQ(e.find_first_of("+/=\n"), std::string::npos);
    EXPECT_EQ(base64url_decode(e), v);
  }
}

TEST(Base64Url, OnlyCanonicalEncodingsDecode) {
  EXPECT_EQ(base64url_decode(""), std::vector<uint8_t>{});
  EXPECT_EQ(base64url_decode("AA"), std::vector<uint8_t>{0});
  EXPECT_EQ(base64url_decode("-_8"), (std::vector<uint8_t>{0xfb, 0xff}));
  // Non-zero trailing bits would give one byte string two spellings (and one file two names).
  const std::vector<std::string> bad_inputs = {
      "AB", "AAB", "A", "AAAAA", "AA==", "AA=", "+/8", "A A", "AA\n", std::string("A\0", 2), "é"};
  for (const std::string& bad : bad_inputs) EXPECT_EQ(base64url_decode(bad), std::nullopt) << bad;
}

TEST(Hex, RejectsOddAndNonHex) {
  EXPECT_EQ(hex_decode("00ff"), (std::vector<uint8_t>{0, 255}));
  EXPECT_EQ(hex_decode("0"), std::nullopt);
  EXPECT_EQ(hex_decode("zz"), std::nullopt);
}

class AeadTest : public ::testing::TestWithParam<CipherId> {};

TEST_P(AeadTest, RoundTripAndEveryTamperFails) {
  auto key = SecretBytes::random(32);
  Aead a(GetParam(), key.span());
  std::vector<uint8_t> nonce(a.nonce_size()), plain = range(0, 200), aad = {1, 2, 3};
  random_fill(nonce);
  std::vector<uint8_t> ct(plain.size() + kAeadTagSize), back(plain.size());
  a.encrypt(ct, plain, nonce, aad);
  ASSERT_TRUE(a.decrypt(back, ct, nonce, aad));
  EXPECT_EQ(back, plain);
  for (size_t i : {size_t{0}, size_t{100}, ct.size() - 1}) {
    auto t = ct;
    t[i] ^= 1;
    EXPECT_FALSE(a.decrypt(back, t, nonce, aad)) << i;
  }
  auto n2 = nonce;
  n2[0] ^= 1;
  EXPECT_FALSE(a.decrypt(back, ct, n2, aad));
  std::vector<uint8_t> aad2 = {1, 2, 4};
  EXPECT_FALSE(a.decrypt(back, ct, nonce, aad2));
  Aead other(GetParam(), SecretBytes::random(32).span());
  EXPECT_FALSE(other.decrypt(back, ct, nonce, aad));
  EXPECT_FALSE(a.decrypt(back, std::span(ct).first(10), nonce, aad));
}

INSTANTIATE_TEST_SUITE_P(Ciphers, AeadTest, ::testing::Values(CipherId::Aes256Gcm, CipherId::XChaCha20Poly1305),
                         [](const auto& info) { return std::string(cipher_name(info.param)); });

TEST(Aead, CipherNamesRoundTrip) {
  for (CipherId id : {CipherId::Aes256Gcm, CipherId::XChaCha20Poly1305})
    EXPECT_EQ(cipher_from_name(cipher_name(id)), id);
  EXPECT_EQ(cipher_from_name("aes128"), std::nullopt);
}

TEST(Siv, DeterministicAuthenticatedAndBoundToAd) {
  Siv s(SecretBytes::random(32));
  std::vector<uint8_t> ad1(16, 1), ad2(16, 2), p = range(0, 48);
  auto c = s.seal(ad1, p);
  EXPECT_EQ(s.seal(ad1, p), c);
  EXPECT_NE(s.seal(ad2, p), c);
  EXPECT_EQ(s.open(ad1, c), p);
  EXPECT_EQ(s.open(ad2, c), std::nullopt);
  for (size_t i = 0; i < c.size(); ++i) {
    auto t = c;
    t[i] ^= 0x80;
    EXPECT_EQ(s.open(ad1, t), std::nullopt) << i;
  }
  EXPECT_EQ(s.open(ad1, std::span(c).first(5)), std::nullopt);
}

TEST(Argon2, RejectsParametersOutsideTheBoundsBeforeWorking) {
  std::vector<uint8_t> salt(kArgonSaltSize, 0), pw = {'p', 'w'};
  EXPECT_EQ(argon2id(pw, salt, kArgonTesting).size(), 32u);
  EXPECT_TRUE(argon2id(pw, salt, kArgonTesting).equals(argon2id(pw, salt, kArgonTesting).span()));
  for (Argon2Params p : {Argon2Params{1, uint64_t{100} << 30}, Argon2Params{uint64_t{1} << 40, 8192},
                         Argon2Params{0, 8192}, Argon2Params{1, 1024}})
    EXPECT_THROW(argon2id(pw, salt, p), Error);
}

TEST(SecretBytes, CloneEqualsAndMovesEmpty) {
  auto a = SecretBytes::random(32);
  auto b = a.clone();
  EXPECT_TRUE(a.equals(b.span()));
  SecretBytes c = std::move(a);
  EXPECT_TRUE(c.equals(b.span()));
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): moved-from state is part of the contract
  EXPECT_FALSE(c.equals(SecretBytes::random(32).span()));
}

}  // namespace
}  // namespace veil
