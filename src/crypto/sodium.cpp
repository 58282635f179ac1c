#include "veilfs/crypto/sodium.hpp"

#include <sodium.h>

#include <mutex>

#include "veilfs/util/error.hpp"

namespace veil {

void ensure_sodium() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (sodium_init() < 0) throw Error(ErrorKind::Io, EIO, "libsodium failed to initialise");
  });
}

bool aes256gcm_available() {
  ensure_sodium();
  return crypto_aead_aes256gcm_is_available() != 0;
}

const char* sodium_library_version() { return sodium_version_string(); }

}  // namespace veil
