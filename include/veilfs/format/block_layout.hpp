// Where plaintext blocks live in a backing file, and what each block's associated data is.
//
//   backing file = header | slot 0 | slot 1 | ... | slot n-1        (an empty file has no header)
//   slot         = nonce | hole_before (u64 LE) | ciphertext | tag   (the last slot may be short)
//
// hole_before counts the all-zero (hole) slots immediately before this one; it is what authenticates a hole.
// The associated data binds a block to its file, position, hole claim and whether it is the file's last block.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "veilfs/crypto/aead.hpp"
#include "veilfs/format/constants.hpp"
#include "veilfs/format/file_header.hpp"

namespace veil::format {

constexpr size_t kHoleFieldSize = 8;
constexpr size_t kBlockAadSize = 2 + kFileIdSize + 8 + 8 + 1;
constexpr uint8_t kBlockFlagFinal = 1;

class BlockLayout {
 public:
  BlockLayout(CipherId cipher, uint32_t block_size);

  uint32_t block_size() const { return block_size_; }
  size_t nonce_size() const { return nonce_size_; }
  size_t overhead() const { return nonce_size_ + kHoleFieldSize + kAeadTagSize; }
  size_t slot_size() const { return block_size_ + overhead(); }

  uint64_t slot_offset(uint64_t index) const { return kFileHeaderSize + index * slot_size(); }
  // Number of slots (complete or not) in a backing file of this size.
  uint64_t block_count(uint64_t backing_size) const;
  // Plaintext size, from the backing size alone (no read).
  uint64_t plain_size(uint64_t backing_size) const;
  // Backing size of a well-formed file with this plaintext size.
  uint64_t backing_size(uint64_t plain_size) const;

  static std::array<uint8_t, kBlockAadSize> aad(const FileId& id, uint64_t index, uint64_t hole_before, bool final);

 private:
  uint32_t block_size_;
  size_t nonce_size_;
};

}  // namespace veil::format
