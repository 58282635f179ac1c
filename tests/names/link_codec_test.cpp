// Symlink targets and extended attributes: round trips and tamper detection.
#include "veilfs/names/link_codec.hpp"

#include <gtest/gtest.h>

#include <random>

#include "veilfs/crypto/encoding.hpp"

namespace veil {
namespace {

std::span<const uint8_t> bytes_of(std::string_view s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }

TEST(LinkCodec, TargetsRoundTripIncluding4095Bytes) {
  LinkCodec lc(SecretBytes::random(32));
  std::string t4095(4095, 'p');
  for (size_t i = 0; i < t4095.size(); i += 7) t4095[i] = '/';
  for (std::string t : {std::string("a"), std::string("../relative/path"), std::string("/abs/Grüße/日本"),
                        std::string(255, 'x'), std::string(3031, 'y'), t4095}) {
    std::string stored = lc.encrypt(t);
    EXPECT_EQ(stored.find('\0'), std::string::npos);
    EXPECT_EQ(lc.decrypt(stored), t) << t.size();
  }
  // The longest target that still fits inline in a backing symlink, and the first that does not.
  EXPECT_LE(lc.encrypt(std::string(3031, 'y')).size(), format::kMaxInlineLinkSize);
  EXPECT_GT(lc.encrypt(std::string(3032, 'y')).size(), format::kMaxInlineLinkSize);
}

TEST(LinkCodec, EncryptionIsRandomised) {
  LinkCodec lc(SecretBytes::random(32));
  EXPECT_NE(lc.encrypt("same"), lc.encrypt("same"));
}

TEST(LinkCodec, TamperedOrForeignTargetsFail) {
  LinkCodec lc(SecretBytes::random(32));
  std::string stored = lc.encrypt("/etc/secret-target");
  const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  for (size_t i = 0; i < stored.size(); ++i) {
    std::string t = stored;
    t[i] = alphabet[(alphabet.find(t[i]) + 1) % 64];
    EXPECT_EQ(lc.decrypt(t), std::nullopt) << i;
  }
  EXPECT_EQ(lc.decrypt(stored.substr(0, stored.size() - 2)), std::nullopt);
  EXPECT_EQ(lc.decrypt(""), std::nullopt);
  EXPECT_EQ(lc.decrypt("not base64!"), std::nullopt);
  EXPECT_EQ(lc.decrypt(std::string(20000, 'A')), std::nullopt);
  EXPECT_EQ(LinkCodec(SecretBytes::random(32)).decrypt(stored), std::nullopt);
}

TEST(XattrCodec, NamesRoundTripDeterministically) {
  XattrCodec xc(SecretBytes::random(32));
  const std::vector<std::string> names = {"user.a", "user.mime_type", "user.with/slash", "user.Grüße",
                                          "user." + std::string(250, 'k')};
  for (const std::string& n : names) {
    auto enc = xc.encrypt_name(n);
    ASSERT_TRUE(enc.has_value()) << n;
    EXPECT_EQ(enc->rfind(format::kXattrBackingPrefix, 0), 0u);
    EXPECT_EQ(xc.encrypt_name(n), enc);
    EXPECT_EQ(xc.decrypt_name(*enc), n);
  }
  EXPECT_NE(xc.encrypt_name("user.a"), xc.encrypt_name("user.b"));
}

TEST(XattrCodec, OnlyTheUserNamespaceIsStored) {
  XattrCodec xc(SecretBytes::random(32));
  for (std::string n : {"user.", "trusted.x", "security.selinux", "system.posix_acl_access", "", "user"})
    EXPECT_EQ(xc.encrypt_name(n), std::nullopt) << n;
  EXPECT_EQ(xc.decrypt_name("user.plain"), std::nullopt);
  EXPECT_EQ(xc.decrypt_name("user.veilfs."), std::nullopt);
  EXPECT_EQ(xc.decrypt_name("user.veilfs.garbage!"), std::nullopt);
}

TEST(XattrCodec, TamperedNamesFail) {
  XattrCodec xc(SecretBytes::random(32));
  std::string enc = *xc.encrypt_name("user.comment");
  for (size_t i = format::kXattrBackingPrefix.size(); i < enc.size(); ++i) {
    std::string t = enc;
    t[i] = t[i] == 'A' ? 'B' : 'A';
    EXPECT_EQ(xc.decrypt_name(t), std::nullopt) << i;
  }
  EXPECT_EQ(XattrCodec(SecretBytes::random(32)).decrypt_name(enc), std::nullopt);
}

TEST(XattrCodec, ValuesRoundTripAndAreBoundToTheirName) {
  XattrCodec xc(SecretBytes::random(32));
  std::string name = *xc.encrypt_name("user.v"), other = *xc.encrypt_name("user.w");
  std::vector<uint8_t> big(65536);
  std::mt19937 rng(3);
  for (auto& b : big) b = static_cast<uint8_t>(rng());
  for (const auto& v : {std::vector<uint8_t>{}, std::vector<uint8_t>{0}, big}) {
    auto stored = xc.encrypt_value(name, v);
    EXPECT_EQ(stored.size(), v.size() + XattrCodec::kValueOverhead);
    EXPECT_EQ(xc.decrypt_value(name, stored), v);
    EXPECT_EQ(xc.decrypt_value(other, stored), std::nullopt) << "a value moved to another attribute must fail";
    for (size_t i : {size_t{0}, size_t{23}, size_t{24}, stored.size() - 1}) {
      auto t = stored;
      t[i] ^= 0x20;
      EXPECT_EQ(xc.decrypt_value(name, t), std::nullopt) << i;
    }
    EXPECT_EQ(xc.decrypt_value(name, std::span(stored).first(stored.size() - 1)), std::nullopt);
  }
  EXPECT_EQ(xc.decrypt_value(name, bytes_of("short")), std::nullopt);
}

}  // namespace
}  // namespace veil
