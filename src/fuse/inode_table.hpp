// The inode table: one Inode per backing (st_dev, st_ino), so hard links share one Inode (and one content
// engine). The FUSE inode number is the Inode's address (the root is FUSE_ROOT_ID).
//
// Descriptors are a bounded resource (the hard limit is 20,000 and trees hold 50,000 files), so an Inode does
// not own an O_PATH descriptor for its whole life: at most `fd_cap` are cached (LRU), and an Inode remembers
// the parent Inode and backing name it was last seen under so that it can be reopened from there. A reopen
// checks (st_dev, st_ino), so a stale location yields ENOENT, never another file.
//
// Lock order: Inode::mu before InodeTable::mu_. InodeTable::mu_ guards nlookup, parent, name, fd, pinned and
// the LRU; Inode::mu guards the per-inode caches (dir IV, symlink size); the content engine is EngineCache's.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "fuse/engine_cache.hpp"
#include "veilfs/names/name_transform.hpp"
#include "veilfs/util/unique_fd.hpp"

namespace veil::fuse {

using FdPtr = std::shared_ptr<const UniqueFd>;

struct Inode : std::enable_shared_from_this<Inode> {
  Inode(dev_t d, ino_t i, mode_t t) : dev(d), ino(i), type(t) {}
  Inode(const Inode&) = delete;
  Inode& operator=(const Inode&) = delete;

  const dev_t dev;
  const ino_t ino;
  const mode_t type;  // S_IFMT bits

  // --- guarded by InodeTable::mu_ ---
  uint64_t nlookup = 0;
  std::shared_ptr<Inode> self;    // keeps the Inode alive while the kernel knows it (nlookup > 0)
  std::shared_ptr<Inode> parent;  // null for the root
  std::string name;               // backing name in parent
  FdPtr fd;                       // cached O_PATH descriptor, or null
  bool pinned = false;            // fd never evicted (root; an unlinked name we may still need)
  uint64_t birth = 0;             // birth time (ns) when known: tells a reused inode number apart
  bool in_lru = false;
  std::list<std::shared_ptr<Inode>>::iterator lru_pos;

  // --- guarded by mu ---
  std::mutex mu;
  std::optional<DirIv> iv;            // directories
  std::optional<uint64_t> link_size;  // symlinks: plaintext target length (targets never change)

  // Regular files: the content engine, owned and guarded by Fs's EngineCache.
  EngineSlot engine;
  // Regular files: what of them is on disk, shared by the engines the file has over time (crash ordering).
  // Declared after `engine`, so that it goes first and the last engine knows it is the last to know.
  std::shared_ptr<DurableShape> durable = std::make_shared<DurableShape>();
};

class InodeTable {
 public:
  InodeTable(UniqueFd root_path_fd, const struct stat& root_st, size_t fd_cap);
  // The kernel does not forget everything at unmount: breaks the self and parent links so all Inodes go.
  ~InodeTable();
  InodeTable(const InodeTable&) = delete;
  InodeTable& operator=(const InodeTable&) = delete;

  Inode& root() { return *root_; }
  Inode& get(uint64_t fuse_ino);
  uint64_t fuse_ino(const Inode& n) const;

  // Registers a kernel reference to the object `st` found as `name` in `parent` (lookup, create, ...).
  // fd, if given, is an O_PATH descriptor of that object to cache. Returns the Inode (nlookup incremented).
  // fresh: the object was just created, so an Inode indexed under its number is stale (the number was freed
  // and reused, possibly while a racing lookup re-added the old object) and must not be reused.
  // birth: the object's birth time where known (0 otherwise); a known Inode with another one is stale too.
  std::shared_ptr<Inode> intern(Inode& parent, const std::string& name, const struct stat& st, UniqueFd fd = {},
                                bool fresh = false, uint64_t birth = 0);
  // The Inode for (dev, ino) if one is alive.
  std::shared_ptr<Inode> find(dev_t dev, ino_t ino);
  // Returns true when the kernel's last reference went (nlookup reached 0).
  bool forget(Inode& n, uint64_t count);

  // An O_PATH descriptor of n (cached, or reopened from its location). Throws ENOENT if it is gone.
  FdPtr fd(Inode& n);
  // The cached descriptor of n, or null (never opens anything).
  FdPtr cached_fd(Inode& n);
  // Where n was last seen: parent and backing name (parent null for the root).
  std::pair<std::shared_ptr<Inode>, std::string> location(Inode& n);
  void set_location(Inode& n, Inode& parent, const std::string& name);
  // Keeps a descriptor to n for good: its last known name is about to disappear (unlink, rename over).
  void pin(Inode& n);
  // n's backing object is gone (last link removed): its inode number may be reused by a new file, which must
  // get a new Inode (and so a new FUSE node id) instead of this one's cached attributes, IV and pages.
  void unindex(Inode& n);
  // Entries the index holds, live or expired (tests: forgotten objects must not accumulate).
  size_t index_entries();

 private:
  void cache_fd_locked(Inode& n, FdPtr fd, std::vector<std::shared_ptr<Inode>>& dropped);
  void sweep_locked();  // drops expired index entries

  struct Key {
    dev_t dev;
    ino_t ino;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const noexcept { return std::hash<uint64_t>()(k.ino * 1000003u ^ k.dev); }
  };

  std::mutex mu_;
  std::shared_ptr<Inode> root_;
  std::unordered_map<Key, std::weak_ptr<Inode>, KeyHash> index_;
  // Inodes taken out of the index while the kernel may still know them: the destructor frees them too.
  std::vector<std::weak_ptr<Inode>> unindexed_;
  size_t swept_size_ = 0;                  // index_ + unindexed_ size after the last sweep of expired entries
  std::list<std::shared_ptr<Inode>> lru_;  // front = most recent
  size_t cached_ = 0;
  size_t fd_cap_;
};

}  // namespace veil::fuse
