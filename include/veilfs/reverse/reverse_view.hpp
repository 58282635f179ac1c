// Reverse mode: a read-only encrypted view of a plain directory that is, byte for byte, a veilfs cipher dir
// (docs/FORMAT.md §15): copy the view anywhere, and forward mode opens the copy with the same passphrase.
//
// The view is deterministic, so that incremental backups of it transfer only what changed: the same plain tree
// gives the same bytes across mounts and reboots. Names are already deterministic (SIV under derived directory
// IVs); what forward mode takes at random is derived here from keys of reverse mode's own (never forward
// mode's) and from what is encrypted:
//   file ID       = BLAKE2b-128(id key, "veilfs reverse file id v1" | inode number | birth time)
//   block nonce   = BLAKE2b(nonce key, "veilfs reverse block v1" | file ID | index | hole_before | final | plaintext)
//   symlink nonce = BLAKE2b-192(link key, "veilfs reverse symlink v1" | target)
// so a block's bytes change exactly when its plaintext (or its hole claim, or its being the last block) does.
// Holes of the plain file stay holes (zero slots claimed by the next data block).
//
// Consistency while the plain tree changes: every block is encrypted from one read of it, and an open file whose
// size, modification or change time differs from what it had when it was opened fails the read (ESTALE), so
// that a copy never mixes two versions of a file's length with its blocks unnoticed: the backup tool retries.
#pragma once

#include <sys/stat.h>
#include <sys/statvfs.h>

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "veilfs/reverse/excludes.hpp"
#include "veilfs/volume.hpp"

namespace veil::reverse {

// The reverse config in PLAINDIR (a veilfs.conf, shown in the view under that name; the file itself is hidden).
inline constexpr std::string_view kReverseConfigName = ".veilfs.reverse.conf";

enum class Kind { Dir, File, Symlink, Special, DirIv, Config, Params, NameSidecar, LinkSidecar };

// What a name in the view stands for.
struct Node {
  Kind kind = Kind::Dir;
  // The plain object, relative to PLAINDIR ("" is the root). DirIv: its directory; sidecars: their entry.
  std::string plain;
  DirIv iv{};           // Dir: the IV its entries' names are encrypted with; DirIv: the IV the file holds
  std::string encoded;  // NameSidecar: the encoded name it holds
};

class ReverseView {
 public:
  // vol's root descriptor is PLAINDIR. config_file: where vol's config is; it is shown as veilfs.conf when it is
  // PLAINDIR's reverse config, and left out of the view when it is kept elsewhere (--config FILE: a copy of the view
  // then needs that file too, as a forward volume with its config kept elsewhere does; veilfs.params is there).
  // excludes: plain paths left out of the view (with all they hold).
  ReverseView(const Volume& vol, std::string config_file, Excludes excludes = {});
  ~ReverseView();
  ReverseView(const ReverseView&) = delete;
  ReverseView& operator=(const ReverseView&) = delete;

  Node root() const;
  // The entry `name` (a name of the view) in directory `dir`; nullopt if there is none.
  std::optional<Node> lookup(const Node& dir, std::string_view name) const;
  struct Entry {
    std::string name;
    Node node;
  };
  // Every entry of directory `dir`, veilfs's own files included. Throws Error (ENOENT when the directory went).
  std::vector<Entry> list(const Node& dir) const;
  // Attributes as the cipher-side file has them: the plain object's, with the cipher size. Throws ENOENT.
  struct stat attributes(const Node& n) const;
  // A symlink's stored (encrypted) target, or the long-target marker.
  std::string readlink(const Node& n) const;

  // An open file of the view (regular files and veilfs's own files). Reads are safe from several threads.
  class Reader {
   public:
    virtual ~Reader() = default;
    // Cipher bytes at off; fewer only at the end. Throws Error: ESTALE when the plain file changed since open.
    virtual size_t read(uint64_t off, std::span<uint8_t> out) const = 0;
  };
  std::unique_ptr<Reader> open(const Node& n) const;

  // The plain file system's figures (free space, block size).
  struct statvfs statfs() const;

  // The file ID a plain object gets (tests: hard links share it, a new file gets another).
  format::FileId file_id(const struct stat& st, uint64_t birth_ns) const;

 private:
  class FileReader;
  struct Keys;
  UniqueFd open_plain(const std::string& rel, int flags) const;
  std::string stored_target(const Node& link) const;  // encrypted, deterministic
  std::string config_bytes() const;
  struct stat own_file_attributes(const Node& n, size_t size, mode_t mode) const;

  std::optional<Node> lookup_hashed(const Node& dir, std::string_view name) const;

  // Long names and sidecars of recently looked-up directories (reserved names only), by plain path.
  struct HashedListing {
    std::string version;  // the directory's inode, mtime and ctime when listed
    std::map<std::string, Node> entries;
  };
  static constexpr size_t kHashedDirs = 64;
  mutable std::mutex hashed_mu_;
  mutable std::map<std::string, HashedListing> hashed_;

  const Volume& vol_;
  std::string config_file_;
  Excludes excludes_;
  bool show_config_;
  std::unique_ptr<Keys> keys_;
  std::string params_;
};

}  // namespace veil::reverse
