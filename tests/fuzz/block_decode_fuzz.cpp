// Block decode: the content engine over a hostile backing file (header, nonces, hole claims, tags, lengths).
// Byte 0 picks the cipher; the rest is the backing file. Seeds are real files under the fixture's key, so the
// fuzzer mutates past authentication into the hole and final-block logic.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "fuzz_common.hpp"

using namespace veil;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  auto& fx = fuzz::fixture();
  auto cipher = (data[0] & 1) ? fx.aes : fx.xchacha;
  int fd = ::memfd_create("veilfs-fuzz", MFD_CLOEXEC);
  if (fd < 0) return 0;
  UniqueFd owned(fd);
  if (size > 1 && ::write(fd, data + 1, size - 1) != static_cast<ssize_t>(size - 1)) return 0;
  ContentFile f(cipher, std::move(owned), "fuzz");
  const uint64_t n = f.size();
  std::vector<uint8_t> buf(64 * 1024);
  try {
    f.read(0, buf);  // the whole file (inputs are at most 64 KiB)
  } catch (const Error&) {
  }
  try {
    (void)f.first_bad_block();
  } catch (const Error&) {
  }
  // Partial reads at block edges, and writes over damage, must fail cleanly too.
  for (uint64_t off : {uint64_t{1}, uint64_t{4095}, uint64_t{4096}, n / 2, n > 0 ? n - 1 : 0}) {
    try {
      f.read(off, std::span<uint8_t>(buf.data(), 5000));
    } catch (const Error&) {
    }
  }
  try {
    const uint8_t patch[7] = {1, 2, 3, 4, 5, 6, 7};
    f.write(n / 3, patch);
    f.truncate(n / 2 + 1);
  } catch (const Error&) {
  }
  return 0;
}
