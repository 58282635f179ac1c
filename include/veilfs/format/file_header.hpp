// The per-file header at offset 0 of every non-empty backing file.
#pragma once

#include <array>
#include <cstdint>
#include <span>

#include "veilfs/format/constants.hpp"

namespace veil::format {

using FileId = std::array<uint8_t, kFileIdSize>;

struct FileHeader {
  uint16_t version = kFileHeaderVersion;
  FileId id{};

  static FileHeader fresh();  // random file ID
  // Throws Corrupt for a wrong size, unknown version or non-zero reserved bytes.
  static FileHeader parse(std::span<const uint8_t> bytes);
  std::array<uint8_t, kFileHeaderSize> serialize() const;
};

}  // namespace veil::format
