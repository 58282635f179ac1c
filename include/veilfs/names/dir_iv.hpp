// The per-directory IV file (veilfs.diriv): exactly 16 bytes.
#pragma once

#include <optional>

#include "veilfs/names/name_transform.hpp"

namespace veil {

// nullopt when the directory has no IV file (crash between mkdir and IV creation, or an IV file that a
// sync service has not delivered yet): the caller derives it. Throws Corrupt if it has the wrong size.
std::optional<DirIv> read_dir_iv(int dirfd);
// Atomic: temp file, fsync, rename, fsync directory.
void write_dir_iv(int dirfd, const DirIv& iv);

}  // namespace veil
