#include "veilfs/format/config.hpp"

#include <fcntl.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "veilfs/crypto/encoding.hpp"
#include "veilfs/crypto/random.hpp"
#include "veilfs/util/error.hpp"
#include "veilfs/util/io.hpp"

namespace veil::format {

using nlohmann::json;

namespace {

constexpr std::string_view kSlotAadLabel = "veilfs keyslot v1";
constexpr std::string_view kParamsMacLabel = "veilfs v1 config params mac";
constexpr const char* kConfigFormat = "veilfs";
constexpr const char* kParamsFormat = "veilfs-params";

std::span<const uint8_t> as_bytes(std::string_view s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }

template <size_t N>
std::array<uint8_t, N> decode_fixed(const json& j, const char* field) {
  auto bytes = base64url_decode(j.at(field).get<std::string>());
  if (!bytes || bytes->size() != N) throw_corrupt(std::string("config field '") + field + "' is malformed");
  std::array<uint8_t, N> out{};
  std::copy(bytes->begin(), bytes->end(), out.begin());
  return out;
}

std::vector<uint8_t> slot_aad(const std::array<uint8_t, kVolumeIdSize>& volume_id, uint32_t slot_id) {
  // Built by index: GCC 12 reports a false array-bounds error for vector::insert here.
  std::vector<uint8_t> aad(kSlotAadLabel.size() + volume_id.size() + 4);
  size_t p = 0;
  for (char ch : kSlotAadLabel) aad[p++] = static_cast<uint8_t>(ch);
  for (uint8_t b : volume_id) aad[p++] = b;
  for (int i = 0; i < 4; ++i) aad[p++] = static_cast<uint8_t>(slot_id >> (8 * i));
  return aad;
}

// The config's JSON; without slots (and under its own format name) it is the params file's.
json body_json(const VolumeConfig& c, bool with_slots = true) {
  json slots = json::array();
  for (const auto& s : c.slots) {
    slots.push_back({{"id", s.id},
                     {"kind", slot_kind_name(s.kind)},
                     {"kdf",
                      {{"algorithm", "argon2id13"},
                       {"opslimit", s.kdf.opslimit},
                       {"memlimit", s.kdf.memlimit},
                       {"salt", base64url_encode(s.salt)}}},
                     {"nonce", base64url_encode(s.nonce)},
                     {"wrapped_key", base64url_encode(s.wrapped)}});
  }
  json j{{"format", with_slots ? kConfigFormat : kParamsFormat},
         {"version", c.version},
         {"volume_id", base64url_encode(c.volume_id)},
         {"cipher", cipher_name(c.cipher)},
         {"block_size", c.block_size},
         {"features", c.features},
         {"params_mac", base64url_encode(c.params_mac)}};
  if (with_slots) j["key_slots"] = slots;
  return j;
}

std::string checksum_of(const json& body) {
  std::string text = body.dump();
  std::array<uint8_t, 32> sum{};
  blake2b(sum, {as_bytes(text)});
  return hex_encode(sum);
}

std::array<uint8_t, 32> params_mac_of(const VolumeConfig& c, const SecretBytes& master) {
  json p{{"version", c.version},
         {"volume_id", base64url_encode(c.volume_id)},
         {"cipher", cipher_name(c.cipher)},
         {"block_size", c.block_size},
         {"features", c.features}};
  std::string text = p.dump();
  SecretBytes key = hkdf_sha256(master.span(), c.volume_id, kParamsMacLabel, 32);
  std::array<uint8_t, 32> mac{};
  blake2b_keyed(mac, key.span(), {as_bytes(text)});
  return mac;
}

}  // namespace

std::string_view slot_kind_name(SlotKind k) { return k == SlotKind::Passphrase ? "passphrase" : "keyfile"; }

std::vector<std::string> VolumeConfig::default_features() {
  return {std::string(kFeatureAuthenticatedHoles), std::string(kFeatureDerivedDirIv),
          std::string(kFeatureFinalBlockMarker), std::string(kFeatureLongNames)};
}

namespace {

// The config or (with_slots false) the params file: the same checks, in the same order, bar the key slots.
VolumeConfig parse_json(std::span<const uint8_t> bytes, bool with_slots) {
  const char* what = with_slots ? "config file" : "params file";
  if (bytes.size() > kMaxConfigSize) throw_corrupt(std::string(what) + " is larger than 64 KiB");
  json j = json::parse(bytes.begin(), bytes.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object())
    throw_corrupt(std::string(what) + " is not valid JSON (truncated or corrupt)");
  try {
    if (j.value("format", "") != (with_slots ? kConfigFormat : kParamsFormat))
      throw_corrupt(with_slots ? "config file is not a veilfs config" : "params file is not a veilfs params file");
    VolumeConfig c;
    c.version = j.at("version").get<uint32_t>();
    if (c.version > kFormatVersion)
      throw Error(ErrorKind::Unsupported, ENOTSUP,
                  "volume format version " + std::to_string(c.version) + " is newer than this veilfs supports (" +
                      std::to_string(kFormatVersion) + "); upgrade veilfs");
    if (c.version < 1) throw_corrupt("config version is invalid");
    // The checksum comes after the version check so that a newer format always gets the clearer message.
    if (!j.contains("checksum")) throw_corrupt(std::string(what) + " checksum is missing");
    std::string sum = j.at("checksum").get<std::string>();
    json body = j;
    body.erase("checksum");
    if (sum != checksum_of(body))
      throw_corrupt(with_slots ? "config checksum mismatch: the config file is corrupt"
                               : "params file checksum mismatch: the params file is corrupt");

    auto features = j.at("features").get<std::vector<std::string>>();
    auto known = VolumeConfig::default_features();
    for (const auto& f : features)
      if (std::find(known.begin(), known.end(), f) == known.end())
        throw Error(ErrorKind::Unsupported, ENOTSUP,
                    "volume needs feature flag '" + f + "', which this veilfs does not know; upgrade veilfs");
    for (const auto& f : known)
      if (std::find(features.begin(), features.end(), f) == features.end())
        throw_corrupt("config lacks required feature flag '" + f + "'");
    c.features = features;
    std::sort(c.features.begin(), c.features.end());

    auto cipher = cipher_from_name(j.at("cipher").get<std::string>());
    if (!cipher) throw Error(ErrorKind::Unsupported, ENOTSUP, "config names an unknown cipher");
    c.cipher = *cipher;
    c.block_size = j.at("block_size").get<uint32_t>();
    if (c.block_size < kMinBlockSize || c.block_size > kMaxBlockSize || (c.block_size & (c.block_size - 1)))
      throw_corrupt("config block size is out of range");
    c.volume_id = decode_fixed<kVolumeIdSize>(j, "volume_id");
    c.params_mac = decode_fixed<32>(j, "params_mac");

    if (!with_slots) return c;
    const json& slots = j.at("key_slots");
    if (!slots.is_array() || slots.empty() || slots.size() > kMaxKeySlots)
      throw_corrupt("config must have between 1 and 32 key slots");
    for (const auto& s : slots) {
      KeySlot k;
      k.id = s.at("id").get<uint32_t>();
      std::string kind = s.at("kind").get<std::string>();
      if (kind == "passphrase")
        k.kind = SlotKind::Passphrase;
      else if (kind == "keyfile")
        k.kind = SlotKind::KeyFile;
      else
        throw_corrupt("config key slot has an unknown kind");
      const json& kdf = s.at("kdf");
      if (kdf.at("algorithm").get<std::string>() != "argon2id13")
        throw Error(ErrorKind::Unsupported, ENOTSUP, "config key slot uses an unknown KDF");
      k.kdf.opslimit = kdf.at("opslimit").get<uint64_t>();
      k.kdf.memlimit = kdf.at("memlimit").get<uint64_t>();
      if (k.kdf.opslimit < kArgonMinOps || k.kdf.opslimit > kArgonMaxOps || k.kdf.memlimit < kArgonMinMem ||
          k.kdf.memlimit > kArgonMaxMem)
        throw_corrupt("config key slot KDF parameters are out of bounds (opslimit 1..64, memlimit 8 KiB..4 GiB)");
      k.salt = decode_fixed<kArgonSaltSize>(kdf, "salt");
      k.nonce = decode_fixed<24>(s, "nonce");
      auto w = base64url_decode(s.at("wrapped_key").get<std::string>());
      if (!w || w->size() != kMasterKeySize + kAeadTagSize) throw_corrupt("config key slot is malformed");
      k.wrapped = std::move(*w);
      for (const auto& other : c.slots)
        if (other.id == k.id) throw_corrupt("config has two key slots with the same id");
      c.slots.push_back(std::move(k));
    }
    return c;
  } catch (const json::exception&) {
    throw_corrupt(std::string(what) + " has a missing or mistyped field");
  }
}

}  // namespace

VolumeConfig VolumeConfig::parse(std::span<const uint8_t> bytes) { return parse_json(bytes, true); }

VolumeConfig VolumeConfig::parse_params(std::span<const uint8_t> bytes) { return parse_json(bytes, false); }

std::string VolumeConfig::serialize_params() const {
  json body = body_json(*this, false);
  body["checksum"] = checksum_of(body);
  return body.dump(2) + "\n";
}

std::string VolumeConfig::serialize() const {
  json body = body_json(*this);
  body["checksum"] = checksum_of(body);
  return body.dump(2) + "\n";
}

std::optional<SecretBytes> VolumeConfig::try_slot(const KeySlot& slot, std::span<const uint8_t> secret) const {
  SecretBytes kek = argon2id(secret, slot.salt, slot.kdf);
  Aead aead(CipherId::XChaCha20Poly1305, kek.span());
  SecretBytes master(kMasterKeySize);
  if (!aead.decrypt(master.span(), slot.wrapped, slot.nonce, slot_aad(volume_id, slot.id))) return std::nullopt;
  return master;
}

SecretBytes VolumeConfig::unlock(std::span<const uint8_t> secret, std::optional<uint32_t>* opened_slot) const {
  for (const auto& s : slots) {
    if (auto master = try_slot(s, secret)) {
      if (opened_slot) *opened_slot = s.id;
      verify_params(*master);
      return std::move(*master);
    }
  }
  throw Error(ErrorKind::WrongSecret, EACCES, "wrong passphrase or key file: no key slot opens with it");
}

uint32_t VolumeConfig::next_slot_id() const {
  uint32_t id = 0;
  for (const auto& s : slots) id = std::max(id, s.id + 1);
  return id;
}

KeySlot VolumeConfig::make_slot(const SecretBytes& master, std::span<const uint8_t> secret, SlotKind kind,
                                const Argon2Params& kdf) const {
  KeySlot s;
  s.id = next_slot_id();
  s.kind = kind;
  s.kdf = kdf;
  random_fill(s.salt);
  random_fill(s.nonce);
  SecretBytes kek = argon2id(secret, s.salt, s.kdf);
  Aead aead(CipherId::XChaCha20Poly1305, kek.span());
  s.wrapped.resize(kMasterKeySize + kAeadTagSize);
  aead.encrypt(s.wrapped, master.span(), s.nonce, slot_aad(volume_id, s.id));
  return s;
}

void VolumeConfig::verify_params(const SecretBytes& master) const {
  auto expect = params_mac_of(*this, master);
  if (!constant_time_equal(expect, params_mac))
    throw_corrupt("config parameters (cipher, block size, features) were modified: refusing to open");
}

void VolumeConfig::seal_params(const SecretBytes& master) { params_mac = params_mac_of(*this, master); }

}  // namespace veil::format
