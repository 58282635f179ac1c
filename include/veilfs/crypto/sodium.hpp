// The only door to libsodium: initialisation. Every crypto entry point calls ensure_sodium().
#pragma once

namespace veil {
void ensure_sodium();
bool aes256gcm_available();  // AES-NI and PCLMUL present
}  // namespace veil
