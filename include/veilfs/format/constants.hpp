// Every constant of the on-disk format, named once. docs/FORMAT.md describes each in prose.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace veil::format {

constexpr uint32_t kFormatVersion = 1;  // config "version"; a newer one refuses to open

// Reserved backing names. Encrypted names are base64url and never contain '.', so no encrypted name can
// equal or start with any of these.
constexpr std::string_view kConfigName = "veilfs.conf";
constexpr std::string_view kParamsName = "veilfs.params";  // the config's parameters without key slots
constexpr std::string_view kDirIvName = "veilfs.diriv";
constexpr std::string_view kLongNamePrefix = "veilfs.longname.";  // + base64url(BLAKE2b-256(full name))
constexpr std::string_view kLongNameSuffix = ".name";             // sidecar: the full encrypted name
constexpr std::string_view kLongLinkPrefix = "veilfs.link.";      // + backing name: long symlink target
constexpr std::string_view kLongLinkMarker = "veilfs.longlink";   // backing symlink target meaning "see sidecar"
constexpr std::string_view kReservedPrefix = "veilfs.";

// Feature flags of format version 1; a config naming any other flag refuses to open.
constexpr std::string_view kFeatureFinalBlockMarker = "final-block-marker";
constexpr std::string_view kFeatureAuthenticatedHoles = "authenticated-holes";
constexpr std::string_view kFeatureLongNames = "long-names";
constexpr std::string_view kFeatureDerivedDirIv = "derived-dir-iv";

// File header: u16 version | u16 reserved (zero) | 16-byte random file ID.
constexpr uint16_t kFileHeaderVersion = 1;
constexpr size_t kFileIdSize = 16;
constexpr size_t kFileHeaderSize = 4 + kFileIdSize;

constexpr uint32_t kDefaultBlockSize = 4096;
constexpr uint32_t kMinBlockSize = 4096;
constexpr uint32_t kMaxBlockSize = 1u << 20;

constexpr size_t kDirIvSize = 16;
constexpr size_t kNameTagSize = 16;     // SIV tag of an encrypted name
constexpr size_t kNamePadQuantum = 16;  // names are padded to hide their exact length
constexpr size_t kMaxPlainNameSize = 255;
constexpr size_t kMaxBackingNameSize = 255;
constexpr size_t kMaxSidecarSize = 1024;  // a longer name sidecar is hostile; read no further
// Symlink targets: an encrypted target longer than fits in a backing symlink goes to a sidecar; an encrypted
// PATH_MAX target is ~5.5 KiB, so a longer stored target is hostile.
constexpr size_t kMaxInlineLinkSize = 4095;
constexpr size_t kMaxStoredLinkSize = 8192;
constexpr size_t kMaxConfigSize = 64 * 1024;
constexpr size_t kMaxKeySlots = 32;
constexpr size_t kMasterKeySize = 32;
constexpr size_t kVolumeIdSize = 16;

// Extended attributes: only the user namespace is stored, under this backing prefix.
constexpr std::string_view kXattrUserPrefix = "user.";
constexpr std::string_view kXattrBackingPrefix = "user.veilfs.";

}  // namespace veil::format
