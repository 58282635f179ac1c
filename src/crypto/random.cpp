#include "veilfs/crypto/random.hpp"

#include <sodium.h>

#include "veilfs/crypto/encoding.hpp"
#include "veilfs/crypto/sodium.hpp"

namespace veil {

void random_fill(std::span<uint8_t> out) {
  ensure_sodium();
  randombytes_buf(out.data(), out.size());
}

std::string random_hex(size_t nbytes) {
  std::vector<uint8_t> b(nbytes);
  random_fill(b);
  return hex_encode(b);
}

}  // namespace veil
