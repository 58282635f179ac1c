// NameTransform::decrypt and the long-name helpers, on any backing name a directory could hold.
#include <cstddef>
#include <cstdint>

#include "fuzz_common.hpp"
#include "veilfs/layout/cipher_dir.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto& fx = veil::fuzz::fixture();
  std::string_view name = veil::fuzz::as_text({data, size});
  if (auto plain = fx.names.decrypt(fx.iv, name)) {
    // Anything that decrypts is a valid name that encrypts back to exactly this encoding (SIV is deterministic).
    if (fx.names.encrypt(fx.iv, *plain) != name) __builtin_trap();
  }
  (void)veil::layout::is_long_name(name);
  (void)veil::layout::is_reserved(name);
  (void)veil::layout::backing_name(name);
  return 0;
}
