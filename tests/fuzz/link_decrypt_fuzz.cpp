// LinkCodec::decrypt: a backing symlink's target (or a long-link sidecar's contents).
#include <cstddef>
#include <cstdint>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto& fx = veil::fuzz::fixture();
  (void)fx.links.decrypt(veil::fuzz::as_text({data, size}));
  return 0;
}
