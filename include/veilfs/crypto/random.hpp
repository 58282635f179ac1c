#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace veil {
void random_fill(std::span<uint8_t> out);
std::string random_hex(size_t nbytes);  // for temporary file names
}  // namespace veil
