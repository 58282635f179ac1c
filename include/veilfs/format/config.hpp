// veilfs.conf: the volume config at the cipher dir's root (JSON). It records the format version, cipher,
// block size and feature flags, and wraps the master key in one or more key slots (Argon2id + XChaCha20-Poly1305).
//
// Three protections, checked in this order so that each failure has its own message:
//  1. "checksum": BLAKE2b-256 over the canonical JSON without this field -> accidental corruption is "corrupt";
//  2. each slot's AEAD -> a secret that opens no slot is "wrong passphrase";
//  3. "params_mac": keyed BLAKE2b-256 under a master-derived key over version, volume ID, cipher, block size
//     and features
//     -> an attacker who edits those (say, to downgrade the cipher) is caught after unlocking.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "veilfs/crypto/aead.hpp"
#include "veilfs/crypto/kdf.hpp"
#include "veilfs/crypto/secret.hpp"
#include "veilfs/format/constants.hpp"

namespace veil::format {

enum class SlotKind { Passphrase, KeyFile };
std::string_view slot_kind_name(SlotKind k);

struct KeySlot {
  uint32_t id = 0;
  SlotKind kind = SlotKind::Passphrase;
  Argon2Params kdf = kArgonDefault;
  std::array<uint8_t, kArgonSaltSize> salt{};
  std::array<uint8_t, 24> nonce{};
  std::vector<uint8_t> wrapped;  // XChaCha20-Poly1305(master key): 32 + 16 bytes
};

struct VolumeConfig {
  uint32_t version = kFormatVersion;
  std::array<uint8_t, kVolumeIdSize> volume_id{};
  CipherId cipher = CipherId::XChaCha20Poly1305;
  uint32_t block_size = kDefaultBlockSize;
  std::vector<std::string> features;
  std::vector<KeySlot> slots;
  std::array<uint8_t, 32> params_mac{};

  static std::vector<std::string> default_features();

  // Parse and validate untrusted bytes. Throws Corrupt (bad JSON, bad checksum, out-of-range field, KDF
  // parameters beyond the accepted bounds) or Unsupported (newer version, unknown feature flag).
  static VolumeConfig parse(std::span<const uint8_t> bytes);
  std::string serialize() const;  // canonical JSON including the checksum
  // veilfs.params: the same without the key slots (see layout::save_params). Parsed with the same checks; the
  // result has no slots, and its parameters are trusted only after verify_params with a master key.
  static VolumeConfig parse_params(std::span<const uint8_t> bytes);
  std::string serialize_params() const;

  // Key slots. A secret is a passphrase or the bytes of a key file.
  SecretBytes unlock(std::span<const uint8_t> secret, std::optional<uint32_t>* opened_slot = nullptr) const;
  std::optional<SecretBytes> try_slot(const KeySlot& slot, std::span<const uint8_t> secret) const;
  KeySlot make_slot(const SecretBytes& master, std::span<const uint8_t> secret, SlotKind kind,
                    const Argon2Params& kdf) const;  // id = next free
  uint32_t next_slot_id() const;

  // Authenticates the volume parameters with the master key; throws Corrupt if they were modified.
  void verify_params(const SecretBytes& master) const;
  void seal_params(const SecretBytes& master);
};

}  // namespace veil::format
