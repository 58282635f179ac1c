// The only door to libsodium: initialisation. Every crypto entry point calls ensure_sodium().
#pragma once

namespace veil {
void ensure_sodium();
bool aes256gcm_available();            // AES-NI and PCLMUL present
const char* sodium_library_version();  // the libsodium loaded at run time ("1.0.18")
}  // namespace veil
