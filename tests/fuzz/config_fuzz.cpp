// VolumeConfig::parse: the config is the first thing read from an untrusted cipher dir.
#include <cstddef>
#include <cstdint>

#include "fuzz_common.hpp"
#include "veilfs/format/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto c = veil::format::VolumeConfig::parse({data, size});
    // Whatever parses must serialise and parse back to the same thing.
    auto again = veil::format::VolumeConfig::parse(veil::fuzz::as_bytes(c.serialize()));
    if (again.serialize() != c.serialize()) __builtin_trap();
  } catch (const veil::Error&) {
  }
  return 0;
}
