#include "veilfs/cli/version.hpp"

#include "veilfs/crypto/sodium.hpp"
#include "veilfs/format/constants.hpp"

#ifndef VEILFS_VERSION
#define VEILFS_VERSION "unknown"
#endif
#ifndef VEILFS_FUSE3_BUILD_VERSION
#define VEILFS_FUSE3_BUILD_VERSION "unknown"
#endif

namespace veil::cli {

std::string version_text(const std::string& program, const char* runtime_libfuse) {
  std::string s = program + " " VEILFS_VERSION "\n";
  s += "format: version " + std::to_string(format::kFormatVersion) + " (veilfs.conf), file header version " +
       std::to_string(format::kFileHeaderVersion) + "\n";
  s += std::string("libsodium: ") + sodium_library_version() + "\n";
  if (runtime_libfuse)
    s += std::string("libfuse: ") + runtime_libfuse + " (built with " VEILFS_FUSE3_BUILD_VERSION ")\n";
  else
    s += "libfuse: " VEILFS_FUSE3_BUILD_VERSION " (what veilfs was built with; " + program + " does not use it)\n";
  return s;
}

}  // namespace veil::cli
