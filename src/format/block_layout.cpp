#include "veilfs/format/block_layout.hpp"

#include <algorithm>

#include "veilfs/util/error.hpp"

namespace veil::format {

namespace {
void put_u64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
}  // namespace

BlockLayout::BlockLayout(CipherId cipher, uint32_t block_size)
    : block_size_(block_size), nonce_size_(veil::nonce_size(cipher)) {
  if (block_size < kMinBlockSize || block_size > kMaxBlockSize || (block_size & (block_size - 1)) != 0)
    throw_invalid("block size must be a power of two between 4 KiB and 1 MiB");
}

uint64_t BlockLayout::block_count(uint64_t backing) const {
  if (backing <= kFileHeaderSize) return 0;
  return (backing - kFileHeaderSize + slot_size() - 1) / slot_size();
}

uint64_t BlockLayout::plain_size(uint64_t backing) const {
  uint64_t n = block_count(backing);
  if (n == 0) return 0;
  uint64_t last = backing - slot_offset(n - 1);
  return (n - 1) * block_size_ + (last > overhead() ? last - overhead() : 0);
}

uint64_t BlockLayout::backing_size(uint64_t plain) const {
  if (plain == 0) return 0;
  uint64_t n = (plain + block_size_ - 1) / block_size_;
  return slot_offset(n - 1) + (plain - (n - 1) * block_size_) + overhead();
}

std::array<uint8_t, kBlockAadSize> BlockLayout::aad(const FileId& id, uint64_t index, uint64_t hole_before,
                                                    bool final) {
  std::array<uint8_t, kBlockAadSize> a{};
  a[0] = static_cast<uint8_t>(kFileHeaderVersion);
  a[1] = static_cast<uint8_t>(kFileHeaderVersion >> 8);
  std::copy(id.begin(), id.end(), a.begin() + 2);
  put_u64(a.data() + 2 + kFileIdSize, index);
  put_u64(a.data() + 2 + kFileIdSize + 8, hole_before);
  a[kBlockAadSize - 1] = final ? kBlockFlagFinal : 0;
  return a;
}

}  // namespace veil::format
