// base64url_decode (names, config fields): canonical, so decode-then-encode gives the input back.
#include <cstddef>
#include <cstdint>

#include "fuzz_common.hpp"
#include "veilfs/crypto/encoding.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text = veil::fuzz::as_text({data, size});
  if (auto bin = veil::base64url_decode(text)) {
    if (veil::base64url_encode(*bin) != text) __builtin_trap();
  }
  if (auto bin = veil::hex_decode(text)) (void)veil::hex_encode(*bin);
  return 0;
}
