// FileHeader::parse: the first 20 bytes of every backing file.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "veilfs/format/file_header.hpp"
#include "veilfs/util/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto h = veil::format::FileHeader::parse({data, size});
    auto out = h.serialize();
    if (size != out.size() || std::memcmp(out.data(), data, size) != 0) __builtin_trap();  // parse is exact
  } catch (const veil::Error&) {
  }
  return 0;
}
