// Volume config: round trip, wrong passphrase vs corrupt vs truncated, KDF bounds, version and feature flags,
// the params MAC, and the atomic replace surviving a crash between the temp file and the rename.
#include "veilfs/format/config.hpp"

#include <fcntl.h>

#include <nlohmann/json.hpp>

#include "../content/content_test_util.hpp"
#include "veilfs/crypto/encoding.hpp"
#include "veilfs/crypto/kdf.hpp"
#include "veilfs/layout/cipher_dir.hpp"

namespace veil::testing {
namespace {

using format::VolumeConfig;
using nlohmann::json;

std::span<const uint8_t> bytes_of(std::string_view s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }

struct Made {
  VolumeConfig cfg;
  SecretBytes master;
};

Made make_config(std::string_view passphrase, CipherId cipher = CipherId::XChaCha20Poly1305) {
  Made m{VolumeConfig{}, SecretBytes::random(format::kMasterKeySize)};
  random_fill(m.cfg.volume_id);
  m.cfg.cipher = cipher;
  m.cfg.features = VolumeConfig::default_features();
  m.cfg.slots.push_back(m.cfg.make_slot(m.master, bytes_of(passphrase), format::SlotKind::Passphrase, kArgonTesting));
  m.cfg.seal_params(m.master);
  return m;
}

// Edits the JSON and recomputes the checksum, as an attacker (or a newer veilfs) could: the checksum only
// catches accidents, so each check behind it must hold on its own.
std::string edited(const VolumeConfig& c, const std::function<void(json&)>& edit) {
  json j = json::parse(c.serialize());
  edit(j);
  j.erase("checksum");
  std::string text = j.dump();
  std::array<uint8_t, 32> sum{};
  blake2b(sum, {bytes_of(text)});
  j["checksum"] = hex_encode(sum);
  return j.dump(2);
}

std::optional<ErrorKind> parse_error(std::string_view text, std::string* message = nullptr) {
  try {
    VolumeConfig::parse(bytes_of(text));
  } catch (const Error& e) {
    if (message) *message = e.what();
    return e.kind();
  }
  return std::nullopt;
}

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dirfd_ = UniqueFd(::open(dir_.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(dirfd_);
  }
  ScratchDir dir_;
  UniqueFd dirfd_;
  Made m_ = make_config("correct horse");
};

TEST_F(ConfigTest, SaveLoadRoundTripsEveryField) {
  layout::save_config(dirfd_.get(), m_.cfg);
  auto c = layout::load_config(dirfd_.get());
  EXPECT_EQ(c.version, format::kFormatVersion);
  EXPECT_EQ(c.volume_id, m_.cfg.volume_id);
  EXPECT_EQ(c.cipher, m_.cfg.cipher);
  EXPECT_EQ(c.block_size, m_.cfg.block_size);
  EXPECT_EQ(c.features, m_.cfg.features);
  EXPECT_EQ(c.params_mac, m_.cfg.params_mac);
  ASSERT_EQ(c.slots.size(), 1u);
  EXPECT_EQ(c.slots[0].kdf.opslimit, kArgonTesting.opslimit);
  EXPECT_EQ(c.slots[0].kdf.memlimit, kArgonTesting.memlimit);
  EXPECT_EQ(c.serialize(), m_.cfg.serialize());
  std::optional<uint32_t> slot;
  EXPECT_TRUE(c.unlock(bytes_of("correct horse"), &slot).equals(m_.master.span()));
  EXPECT_EQ(slot, 0u);
  // The saved file holds no secret in the clear.
  auto text = file_bytes(dir_.file("veilfs.conf"));
  std::string s(text.begin(), text.end());
  EXPECT_EQ(s.find("correct horse"), std::string::npos);
  EXPECT_EQ(s.find(base64url_encode(m_.master.span())), std::string::npos);
  EXPECT_EQ(s.find(hex_encode(m_.master.span())), std::string::npos);
}

TEST_F(ConfigTest, WrongPassphraseIsWrongSecretNotCorrupt) {
  try {
    m_.cfg.unlock(bytes_of("wrong horse"));
    FAIL() << "a wrong passphrase unlocked the volume";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::WrongSecret);
    EXPECT_NE(std::string(e.what()).find("wrong passphrase"), std::string::npos) << e.what();
  }
  EXPECT_EQ(error_kind_of([&] { m_.cfg.unlock({}); }), ErrorKind::WrongSecret);
}

TEST_F(ConfigTest, SeveralSlotsEachOpenWithTheirOwnSecret) {
  m_.cfg.slots.push_back(m_.cfg.make_slot(m_.master, bytes_of("second"), format::SlotKind::KeyFile, kArgonTesting));
  auto c = VolumeConfig::parse(bytes_of(m_.cfg.serialize()));
  std::optional<uint32_t> slot;
  EXPECT_TRUE(c.unlock(bytes_of("second"), &slot).equals(m_.master.span()));
  EXPECT_EQ(slot, 1u);
  EXPECT_EQ(c.slots[1].kind, format::SlotKind::KeyFile);
  EXPECT_TRUE(c.unlock(bytes_of("correct horse")).equals(m_.master.span()));
}

TEST_F(ConfigTest, CorruptConfigIsCorruptNotWrongPassphrase) {
  const std::string good = m_.cfg.serialize();
  // A changed character anywhere in a value: the checksum says "corrupt" before any passphrase is tried.
  for (const char* field : {"wrapped_key", "salt", "volume_id", "params_mac", "nonce"}) {
    std::string t = good;
    size_t p = t.find(std::string("\"") + field + "\": \"");
    ASSERT_NE(p, std::string::npos) << field;
    p += std::strlen(field) + 6;
    t[p] = t[p] == 'A' ? 'B' : 'A';
    EXPECT_EQ(parse_error(t), ErrorKind::Corrupt) << field;
  }
  for (std::string bad : {std::string(), std::string("{}"), std::string("[]"), std::string("null"),
                          std::string("not json at all"), std::string(good.size(), '\0')})
    EXPECT_EQ(parse_error(bad), ErrorKind::Corrupt);
  EXPECT_EQ(parse_error(edited(m_.cfg, [](json& j) { j["format"] = "gocryptfs"; })), ErrorKind::Corrupt);
  EXPECT_EQ(parse_error(edited(m_.cfg, [](json& j) { j["key_slots"] = json::array(); })), ErrorKind::Corrupt);
  EXPECT_EQ(parse_error(edited(m_.cfg, [](json& j) { j["block_size"] = 4097; })), ErrorKind::Corrupt);
  EXPECT_EQ(parse_error(edited(m_.cfg, [](json& j) { j["block_size"] = "4096"; })), ErrorKind::Corrupt);
  EXPECT_EQ(parse_error(edited(m_.cfg, [](json& j) { j["key_slots"][0]["wrapped_key"] = "AAAA"; })),
            ErrorKind::Corrupt);
  EXPECT_EQ(parse_error(edited(m_.cfg, [](json& j) { j["key_slots"].push_back(j["key_slots"][0]); })),
            ErrorKind::Corrupt)
      << "two slots with one id";
  EXPECT_EQ(parse_error(edited(m_.cfg,
                               [](json& j) {
                                 for (int i = 0; i < 40; ++i) {
                                   json s = j["key_slots"][0];
                                   s["id"] = i + 1;
                                   j["key_slots"].push_back(s);
                                 }
                               })),
            ErrorKind::Corrupt)
      << "more than 32 slots";
}

TEST_F(ConfigTest, TruncatedConfigIsCorrupt) {
  const std::string good = m_.cfg.serialize();
  for (size_t n = 0; n < good.size(); n += std::max<size_t>(1, good.size() / 40)) {
    SCOPED_TRACE(n);
    EXPECT_EQ(parse_error(good.substr(0, n)), ErrorKind::Corrupt);
  }
  for (size_t cut = 1; cut <= 3; ++cut) {
    // The pretty-printed file ends in "}\n": dropping the newline alone is harmless, anything more is not.
    std::string t = good.substr(0, good.size() - cut);
    if (cut == 1) {
      EXPECT_EQ(parse_error(t), std::nullopt);
    } else {
      EXPECT_EQ(parse_error(t), ErrorKind::Corrupt);
    }
  }
  put_file_bytes(dir_.file("veilfs.conf"), std::vector<uint8_t>(good.begin(), good.begin() + good.size() / 2));
  EXPECT_EQ(error_kind_of([&] { layout::load_config(dirfd_.get()); }), ErrorKind::Corrupt);
}

TEST_F(ConfigTest, OversizedConfigFileIsRefusedUnread) {
  put_file_bytes(dir_.file("veilfs.conf"), std::vector<uint8_t>(format::kMaxConfigSize + 1, ' '));
  EXPECT_EQ(error_kind_of([&] { layout::load_config(dirfd_.get()); }), ErrorKind::Corrupt);
}

TEST_F(ConfigTest, MissingConfigIsNotFound) {
  EXPECT_EQ(error_kind_of([&] { layout::load_config(dirfd_.get()); }), ErrorKind::NotFound);
}

TEST_F(ConfigTest, OversizedKdfParametersAreRejectedBeforeAnyWork) {
  // 100 GiB of memory or an absurd iteration count: refused at parse time, long before Argon2 would allocate.
  struct P {
    const char* field;
    json value;
  };
  for (const P& p :
       {P{"memlimit", json(uint64_t{100} << 30)}, P{"opslimit", json(uint64_t{1} << 62)}, P{"memlimit", json(0)},
        P{"opslimit", json(0)}, P{"memlimit", json(-1)}, P{"memlimit", json("lots")}}) {
    std::string msg;
    auto kind = parse_error(edited(m_.cfg, [&](json& j) { j["key_slots"][0]["kdf"][p.field] = p.value; }), &msg);
    EXPECT_EQ(kind, ErrorKind::Corrupt) << p.field << " = " << p.value.dump();
  }
  // And the key-derivation layer refuses them on its own, for a slot built in memory.
  auto slot = m_.cfg.slots[0];
  slot.kdf.memlimit = uint64_t{100} << 30;
  EXPECT_EQ(error_kind_of([&] { m_.cfg.try_slot(slot, bytes_of("correct horse")); }), ErrorKind::InvalidArgument);
  slot = m_.cfg.slots[0];
  slot.kdf.opslimit = uint64_t{1} << 40;
  EXPECT_EQ(error_kind_of([&] { m_.cfg.try_slot(slot, bytes_of("correct horse")); }), ErrorKind::InvalidArgument);
}

TEST_F(ConfigTest, UnknownFeatureFlagIsUnsupportedAndNamed) {
  std::string msg;
  auto kind = parse_error(edited(m_.cfg, [](json& j) { j["features"].push_back("time-travel-holes"); }), &msg);
  EXPECT_EQ(kind, ErrorKind::Unsupported);
  EXPECT_NE(msg.find("time-travel-holes"), std::string::npos) << msg;
}

TEST_F(ConfigTest, NewerVersionIsUnsupportedAndSaysSo) {
  std::string msg;
  EXPECT_EQ(parse_error(edited(m_.cfg, [](json& j) { j["version"] = 2; }), &msg), ErrorKind::Unsupported);
  EXPECT_NE(msg.find("version 2"), std::string::npos) << msg;
  // A newer format may change the checksum rules too: the version message must still come first.
  json j = json::parse(m_.cfg.serialize());
  j["version"] = 7;
  j["checksum"] = "whatever a future version computes";
  j["cipher"] = "future-cipher";
  EXPECT_EQ(parse_error(j.dump(), &msg), ErrorKind::Unsupported);
  EXPECT_NE(msg.find("version 7"), std::string::npos) << msg;
  EXPECT_EQ(parse_error(edited(m_.cfg, [](json& j2) { j2["version"] = 0; })), ErrorKind::Corrupt);
}

TEST_F(ConfigTest, MissingRequiredFeatureIsCorrupt) {
  EXPECT_EQ(parse_error(edited(m_.cfg, [](json& j) { j["features"] = json::array({"long-names"}); })),
            ErrorKind::Corrupt);
}

TEST_F(ConfigTest, ParamsMacCatchesChangedCipherOrBlockSize) {
  for (auto edit : std::vector<std::function<void(json&)>>{[](json& j) { j["cipher"] = "aes256gcm"; },
                                                           [](json& j) { j["block_size"] = 8192; }}) {
    // Parses (the checksum was recomputed), but unlocking with the right passphrase refuses the edit.
    auto c = VolumeConfig::parse(bytes_of(edited(m_.cfg, edit)));
    EXPECT_EQ(error_kind_of([&] { c.unlock(bytes_of("correct horse")); }), ErrorKind::Corrupt);
    EXPECT_EQ(error_kind_of([&] { c.verify_params(m_.master); }), ErrorKind::Corrupt);
  }
  EXPECT_NO_THROW(m_.cfg.verify_params(m_.master));
}

TEST_F(ConfigTest, CrashBetweenTempFileAndRenameLeavesOldConfigUsable) {
  layout::save_config(dirfd_.get(), m_.cfg);
  // The state a crash leaves after write_file_atomic wrote (part of) its temp file but before the rename.
  auto next = m_.cfg;
  next.slots.push_back(next.make_slot(m_.master, bytes_of("new one"), format::SlotKind::Passphrase, kArgonTesting));
  std::string text = next.serialize();
  put_file_bytes(dir_.file("veilfs.conf.tmp.0123456789abcdef"),
                 std::vector<uint8_t>(text.begin(), text.begin() + text.size() / 2));
  auto loaded = layout::load_config(dirfd_.get());
  EXPECT_EQ(loaded.slots.size(), 1u);
  EXPECT_TRUE(loaded.unlock(bytes_of("correct horse")).equals(m_.master.span()));
  EXPECT_EQ(error_kind_of([&] { loaded.unlock(bytes_of("new one")); }), ErrorKind::WrongSecret);
  // The next save goes through, and both secrets then work.
  layout::save_config(dirfd_.get(), next);
  auto after = layout::load_config(dirfd_.get());
  EXPECT_TRUE(after.unlock(bytes_of("new one")).equals(m_.master.span()));
  EXPECT_TRUE(after.unlock(bytes_of("correct horse")).equals(m_.master.span()));
}

TEST_F(ConfigTest, SaveLeavesNoTempFileBehind) {
  layout::save_config(dirfd_.get(), m_.cfg);
  layout::save_config(dirfd_.get(), m_.cfg);
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir_.path())) names.push_back(e.path().filename());
  EXPECT_EQ(names, std::vector<std::string>{"veilfs.conf"});
}

}  // namespace
// veilfs.params: the config without its slots, authenticated by the same MAC once a master key is at hand.
TEST_F(ConfigTest, ParamsFileRoundTripsWithoutSlotsAndIsNeverTakenForAConfig) {
  const std::string text = m_.cfg.serialize_params();
  EXPECT_EQ(text.find("key_slots"), std::string::npos);
  EXPECT_EQ(text.find("wrapped_key"), std::string::npos);
  VolumeConfig p = VolumeConfig::parse_params(bytes_of(text));
  EXPECT_TRUE(p.slots.empty());
  EXPECT_EQ(p.volume_id, m_.cfg.volume_id);
  EXPECT_EQ(p.cipher, m_.cfg.cipher);
  EXPECT_EQ(p.block_size, m_.cfg.block_size);
  EXPECT_EQ(p.features, m_.cfg.features);
  EXPECT_NO_THROW(p.verify_params(m_.master));
  EXPECT_EQ(error_kind_of([&] { p.verify_params(SecretBytes::random(format::kMasterKeySize)); }), ErrorKind::Corrupt);
  // Each is refused where the other is expected.
  EXPECT_EQ(parse_error(text), ErrorKind::Corrupt);
  EXPECT_EQ(error_kind_of([&] { VolumeConfig::parse_params(bytes_of(m_.cfg.serialize())); }), ErrorKind::Corrupt);
  // An accident is caught by the checksum; an edit with a fixed checksum by the MAC.
  std::string damaged = text;
  damaged[damaged.find("block_size") + 13] ^= 1;
  EXPECT_EQ(error_kind_of([&] { VolumeConfig::parse_params(bytes_of(damaged)); }), ErrorKind::Corrupt);
  json j = json::parse(text);
  j["block_size"] = 8192;
  j.erase("checksum");
  std::string body = j.dump();
  std::array<uint8_t, 32> sum{};
  blake2b(sum, {bytes_of(body)});
  j["checksum"] = hex_encode(sum);
  VolumeConfig forged = VolumeConfig::parse_params(bytes_of(j.dump()));
  EXPECT_EQ(error_kind_of([&] { forged.verify_params(m_.master); }), ErrorKind::Corrupt);
  // Through the layout: written atomically at the root, absent is nullopt, not an error.
  EXPECT_FALSE(layout::load_params(dirfd_.get()));
  layout::save_params(dirfd_.get(), m_.cfg);
  auto loaded = layout::load_params(dirfd_.get());
  ASSERT_TRUE(loaded);
  EXPECT_EQ(loaded->params_mac, m_.cfg.params_mac);
}

}  // namespace veil::testing
