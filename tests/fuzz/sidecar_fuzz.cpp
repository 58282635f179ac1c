// Long-name sidecars (and long symlink-target sidecars) as fsck and the name engine handle them.
// Byte 0: 0 = the rest is the sidecar's raw contents; 1 = the rest is a plain name, encrypted into a valid
// sidecar (so the fuzzer also explores the paths after the hash check).
#include <unistd.h>

#include <cstddef>
#include <cstdint>

#include "fsck/checker.hpp"
#include "fuzz_common.hpp"
#include "veilfs/layout/cipher_dir.hpp"

using namespace veil;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 || size > 4096) return 0;
  auto& scratch = fuzz::ScratchVolume::instance();
  const Volume& vol = scratch.vol();
  scratch.reset();
  std::string content(reinterpret_cast<const char*>(data + 1), size - 1);
  if (data[0] & 1) {
    try {
      content = vol.names().encrypt(vol.root_iv(), fuzz::sanitize_name(content).substr(0, 255));
    } catch (const Error&) {
      return 0;
    }
  }
  (void)layout::needs_long_name(content);
  (void)vol.names().decrypt(vol.root_iv(), content);
  const int root = vol.root_fd();
  // The entry the sidecar belongs to (by hash), a second entry it does not match, and a long symlink using it.
  std::string owner = layout::long_name_for(content);
  fuzz::put_file(root, owner, {});
  fuzz::put_file(root, layout::name_sidecar_of(owner), fuzz::as_bytes(content));
  std::string other = layout::long_name_for(content + "x");
  ::mkdirat(root, other.c_str(), 0700);
  fuzz::put_file(root, layout::name_sidecar_of(other), fuzz::as_bytes(content));
  std::string link = vol.names().encrypt(vol.root_iv(), "link");
  (void)::symlinkat(std::string(format::kLongLinkMarker).c_str(), root, link.c_str());
  fuzz::put_file(root, std::string(format::kLongLinkPrefix) + link, fuzz::as_bytes(content));
  fsck::Options opt;
  opt.repair = data[0] & 2;
  fsck::Checker c(vol, opt);
  (void)c.run();
  return 0;
}
