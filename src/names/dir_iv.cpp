#include "veilfs/names/dir_iv.hpp"

#include <algorithm>

#include "veilfs/util/error.hpp"
#include "veilfs/util/io.hpp"

namespace veil {

std::optional<DirIv> read_dir_iv(int dirfd) {
  std::vector<uint8_t> bytes;
  try {
    bytes = read_small_file(dirfd, std::string(format::kDirIvName), format::kDirIvSize);
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::Io && e.sys_errno() == ENOENT) return std::nullopt;
    throw;
  }
  if (bytes.size() != format::kDirIvSize) throw_corrupt("directory IV file has the wrong size");
  DirIv iv{};
  std::copy(bytes.begin(), bytes.end(), iv.begin());
  return iv;
}

void write_dir_iv(int dirfd, const DirIv& iv) { write_file_atomic(dirfd, std::string(format::kDirIvName), iv, 0444); }

}  // namespace veil
