// Paths between the cipher dir and the plain view, for `veilfs xray`: which backing file fsck, a backup tool or a
// sync service named, and which to restore from a backup of the cipher dir. Reads the cipher dir (IV files,
// long-name sidecars) and never writes it; no mount is needed.
#pragma once

#include <string>
#include <vector>

#include "veilfs/volume.hpp"

namespace veil {

struct PlainPath {
  std::string path;  // "/docs/report.txt"; for veilfs's own files, the entry or directory they belong to
  // Empty for an entry of the plain view; else what the backing file is to it ("its long-name sidecar", ...).
  std::string role;
};

// The plain path a backing path stands for. `cipher_path` is relative to the cipher dir ("" or "." for its root);
// absolute paths are the caller's to make relative. Throws Error: NotFound (a component does not exist), Corrupt
// (a name that does not decrypt, a damaged sidecar: the message says which component, by its cipher name).
PlainPath plain_path_of(const Volume& vol, const std::string& cipher_path);

// The backing files of a plain path, relative to the cipher dir: the entry first, then its own files (a long
// name's sidecar, a long symlink target's sidecar, a directory's IV file). Every parent directory must exist in
// the cipher dir (their IVs are read); the entry itself need not (its name is computed), then only it is listed.
std::vector<std::string> cipher_paths_of(const Volume& vol, const std::string& plain_path);

}  // namespace veil
