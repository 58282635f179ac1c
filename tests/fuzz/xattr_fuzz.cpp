// XattrCodec: backing attribute names and values. Byte 0 splits the input into a name and a value.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  auto& fx = veil::fuzz::fixture();
  size_t split = std::min<size_t>(data[0], size - 1);
  std::string name(reinterpret_cast<const char*>(data + 1), split);
  std::span<const uint8_t> value(data + 1 + split, size - 1 - split);
  if (auto plain = fx.xattrs.decrypt_name(name)) {
    if (fx.xattrs.encrypt_name(*plain) != name) __builtin_trap();  // deterministic names round-trip
  }
  (void)fx.xattrs.decrypt_value(name, value);
  (void)fx.xattrs.decrypt_name("user.veilfs." + name);
  return 0;
}
