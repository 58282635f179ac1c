#include "veilfs/format/file_header.hpp"

#include "veilfs/crypto/random.hpp"
#include "veilfs/util/error.hpp"

namespace veil::format {

FileHeader FileHeader::fresh() {
  FileHeader h;
  random_fill(h.id);
  return h;
}

FileHeader FileHeader::parse(std::span<const uint8_t> b) {
  if (b.size() != kFileHeaderSize) throw_corrupt("file header truncated");
  FileHeader h;
  h.version = static_cast<uint16_t>(b[0] | (b[1] << 8));
  if (h.version != kFileHeaderVersion)
    throw_corrupt("file header version " + std::to_string(h.version) + " is not supported");
  if (b[2] != 0 || b[3] != 0) throw_corrupt("file header reserved bytes are not zero");
  std::copy(b.begin() + 4, b.end(), h.id.begin());
  return h;
}

std::array<uint8_t, kFileHeaderSize> FileHeader::serialize() const {
  std::array<uint8_t, kFileHeaderSize> out{};
  out[0] = static_cast<uint8_t>(version);
  out[1] = static_cast<uint8_t>(version >> 8);
  std::copy(id.begin(), id.end(), out.begin() + 4);
  return out;
}

}  // namespace veil::format
