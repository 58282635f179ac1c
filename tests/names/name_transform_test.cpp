// Name transform: round trips, long names, reserved names, invalid names, directory binding, hostile encodings.
#include "veilfs/names/name_transform.hpp"

#include <gtest/gtest.h>

#include <random>
#include <set>

#include "veilfs/crypto/encoding.hpp"
#include "veilfs/crypto/random.hpp"
#include "veilfs/layout/cipher_dir.hpp"
#include "veilfs/util/error.hpp"

namespace veil {
namespace {

DirIv random_iv() {
  DirIv iv;
  random_fill(iv);
  return iv;
}

class NameTransformTest : public ::testing::Test {
 protected:
  NameTransform nt_{SecretBytes::random(32)};
  DirIv iv_ = random_iv();

  void expect_round_trip(const std::string& name) {
    std::string enc = nt_.encrypt(iv_, name);
    EXPECT_FALSE(enc.empty());
    EXPECT_EQ(enc.find('/'), std::string::npos);
    EXPECT_EQ(enc.find('\0'), std::string::npos);
    EXPECT_EQ(enc.find('.'), std::string::npos) << "a '.' could collide with reserved names";
    EXPECT_FALSE(layout::is_reserved(enc));
    EXPECT_EQ(nt_.encrypt(iv_, name), enc) << "encryption must be deterministic per directory";
    auto dec = nt_.decrypt(iv_, enc);
    ASSERT_TRUE(dec.has_value()) << "length " << name.size();
    EXPECT_EQ(*dec, name);
    // The backing name is short enough for any file system, directly or through the long-name form.
    EXPECT_LE(layout::backing_name(enc).size(), format::kMaxBackingNameSize);
    EXPECT_LE(layout::name_sidecar_of(layout::backing_name(enc)).size(), format::kMaxBackingNameSize);
  }
};

TEST_F(NameTransformTest, AsciiAndUtf8NamesRoundTrip) {
  for (std::string n : {"a", "hello.txt", ".hidden", "...", "with space", "Grüße", "日本語のファイル名.txt", "emoji 😀🎉",
                        "\xff\xfe invalid utf8 is still bytes", "-_=+", "veilfs.conf", "veilfs.diriv",
                        "veilfs.longname.AAAA", "x.tmp.0123456789abcdef"})
    expect_round_trip(n);
}

TEST_F(NameTransformTest, EveryLengthFrom1To255RoundTrips) {
  std::mt19937 rng(255);
  for (size_t len = 1; len <= 255; ++len) {
    std::string name(len, 'x');
    for (auto& c : name) {
      do c = static_cast<char>(rng());
      while (c == '/' || c == '\0');
    }
    if (name == "." || name == "..") continue;
    SCOPED_TRACE(len);
    expect_round_trip(name);
  }
}

TEST_F(NameTransformTest, EveryByteValueExceptSlashAndNulRoundTrips) {
  std::string all;
  for (int b = 1; b < 256; ++b)
    if (b != '/') all.push_back(static_cast<char>(b));
  ASSERT_EQ(all.size(), 254u);
  expect_round_trip(all);
  for (int b = 1; b < 256; ++b)
    if (b != '/' && b != '.') expect_round_trip(std::string(1, static_cast<char>(b)));
}

TEST_F(NameTransformTest, LengthIsHiddenUpToThePaddingQuantum) {
  EXPECT_EQ(nt_.encrypt(iv_, "a").size(), nt_.encrypt(iv_, std::string(15, 'a')).size());
  EXPECT_LT(nt_.encrypt(iv_, std::string(15, 'a')).size(), nt_.encrypt(iv_, std::string(16, 'a')).size());
}

TEST_F(NameTransformTest, InvalidNamesAreRejected) {
  for (std::string n : {std::string(), std::string("."), std::string(".."), std::string("a/b"), std::string("/"),
                        std::string("a\0b", 3)}) {
    try {
      nt_.encrypt(iv_, n);
      ADD_FAILURE() << "accepted an invalid name of length " << n.size();
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument);
    }
  }
}

TEST_F(NameTransformTest, A256ByteNameIsNameTooLong) {
  try {
    nt_.encrypt(iv_, std::string(256, 'n'));
    ADD_FAILURE() << "accepted a 256-byte name";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::NameTooLong);
    EXPECT_EQ(e.sys_errno(), ENAMETOOLONG);
  }
  expect_round_trip(std::string(255, 'n'));
}

TEST_F(NameTransformTest, LongEncodingsGoUnderAHashedNameWithASidecar) {
  bool saw_short = false, saw_long = false;
  for (size_t len = 100; len <= 255; ++len) {
    std::string enc = nt_.encrypt(iv_, std::string(len, 'L'));
    std::string backing = layout::backing_name(enc);
    if (!layout::needs_long_name(enc)) {
      saw_short = true;
      EXPECT_EQ(backing, enc);
      EXPECT_LE(enc.size(), 255u);
      continue;
    }
    saw_long = true;
    EXPECT_GT(enc.size(), 255u);
    EXPECT_EQ(backing, layout::long_name_for(enc));
    EXPECT_TRUE(layout::is_long_name(backing));
    EXPECT_TRUE(layout::is_reserved(backing));
    EXPECT_EQ(backing.rfind(format::kLongNamePrefix, 0), 0u);
    EXPECT_LE(backing.size(), 255u);
    std::string sidecar = layout::name_sidecar_of(backing);
    EXPECT_EQ(sidecar, backing + ".name");
    EXPECT_FALSE(layout::is_long_name(sidecar)) << "a sidecar is not itself a long-name entry";
    EXPECT_TRUE(layout::is_reserved(sidecar));
    // The full encoded name decrypts as usual; it is only stored elsewhere.
    EXPECT_EQ(nt_.decrypt(iv_, enc), std::string(len, 'L'));
    // Hashing is deterministic and distinct per name.
    EXPECT_EQ(layout::long_name_for(enc), backing);
    EXPECT_NE(layout::long_name_for(nt_.encrypt(random_iv(), std::string(len, 'L'))), backing);
  }
  EXPECT_TRUE(saw_short && saw_long);
  // The decryptor bounds its input: an encoding far beyond any valid name is refused without work.
  EXPECT_EQ(nt_.decrypt(iv_, std::string(100000, 'A')), std::nullopt);
}

TEST_F(NameTransformTest, ReservedNamesAreNeverDecryptedIntoThePlainView) {
  for (std::string r :
       {std::string(format::kConfigName), std::string(format::kDirIvName), layout::long_name_for(std::string(300, 'A')),
        layout::name_sidecar_of(layout::long_name_for(std::string(300, 'A'))),
        std::string(format::kLongLinkPrefix) + "abc", std::string(format::kLongLinkMarker),
        std::string("veilfs.conf.tmp.0011223344556677"), std::string(".."), std::string(".")}) {
    EXPECT_EQ(nt_.decrypt(iv_, r), std::nullopt) << r;
  }
  EXPECT_TRUE(layout::is_reserved("veilfs.conf"));
  EXPECT_TRUE(layout::is_reserved("veilfs.diriv"));
  EXPECT_FALSE(layout::is_long_name("veilfs.longname.short"));
  EXPECT_FALSE(layout::is_long_name(std::string(format::kLongNamePrefix) + std::string(42, 'a') + ".x"));
}

TEST_F(NameTransformTest, NameMovedToAnotherDirectoryFailsToDecrypt) {
  std::string enc = nt_.encrypt(iv_, "secret-plan.txt");
  DirIv other = random_iv();
  EXPECT_EQ(nt_.decrypt(other, enc), std::nullopt);
  EXPECT_NE(nt_.encrypt(other, "secret-plan.txt"), enc) << "equal names must differ across directories";
  NameTransform other_key(SecretBytes::random(32));
  EXPECT_EQ(other_key.decrypt(iv_, enc), std::nullopt);
}

TEST_F(NameTransformTest, GarbageAndBitFlippedEncodingsFailCleanly) {
  std::string enc = nt_.encrypt(iv_, "a-name-of-some-length.txt");
  const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  for (size_t i = 0; i < enc.size(); ++i) {
    std::string t = enc;
    t[i] = alphabet[(alphabet.find(t[i]) + 1) % alphabet.size()];
    EXPECT_EQ(nt_.decrypt(iv_, t), std::nullopt) << "position " << i;
  }
  EXPECT_EQ(nt_.decrypt(iv_, enc.substr(0, enc.size() - 1)), std::nullopt);
  EXPECT_EQ(nt_.decrypt(iv_, enc + "A"), std::nullopt);
  EXPECT_EQ(nt_.decrypt(iv_, enc + "AAAA"), std::nullopt);
  std::mt19937 rng(7);
  for (int k = 0; k < 2000; ++k) {
    std::string g(rng() % 300, ' ');
    for (auto& c : g) c = static_cast<char>(rng() % 2 ? alphabet[rng() % 64] : static_cast<char>(rng()));
    EXPECT_NO_THROW(EXPECT_EQ(nt_.decrypt(iv_, g), std::nullopt));
  }
  for (std::string g : {"", "A", "AA", "AAAA", "====", "a b", "+/+/", "\n"})
    EXPECT_EQ(nt_.decrypt(iv_, g), std::nullopt);
}

TEST_F(NameTransformTest, DeriveChildIvIsDeterministicAndDistinct) {
  std::string a = nt_.encrypt(iv_, "a"), b = nt_.encrypt(iv_, "b");
  DirIv ca = nt_.derive_child_iv(iv_, a);
  EXPECT_EQ(nt_.derive_child_iv(iv_, a), ca);
  EXPECT_NE(nt_.derive_child_iv(iv_, b), ca);
  EXPECT_NE(nt_.derive_child_iv(random_iv(), a), ca);
  EXPECT_NE(ca, iv_);
  // Another volume (another key) derives another IV for the same parent and name.
  NameTransform other(SecretBytes::random(32));
  EXPECT_NE(other.derive_child_iv(iv_, a), ca);
  // Two instances with the same key (two machines sharing the volume) agree.
  SecretBytes k = SecretBytes::random(32);
  NameTransform m1(k), m2(k);
  EXPECT_EQ(m1.derive_child_iv(iv_, a), m2.derive_child_iv(iv_, a));
  std::set<DirIv> seen;
  for (int i = 0; i < 200; ++i) {
    std::string name = std::to_string(i);  // (not "d" + ...: GCC 12 reports a false -Wrestrict there)
    name += 'd';
    seen.insert(nt_.derive_child_iv(iv_, nt_.encrypt(iv_, name)));
  }
  EXPECT_EQ(seen.size(), 200u);
}

}  // namespace
}  // namespace veil
