// The cache of content engines (one ContentFile per regular-file inode). The kernel sends no OPEN or RELEASE
// (FUSE "no open" support saves two round trips per open), so an engine is made at the first read or write of
// an inode and kept until the kernel forgets the inode; at most `cap` are kept, least recently used first out,
// because each holds a descriptor and a key in locked memory.
//
// Two rules keep the data safe: there is never more than one engine per inode at a time (two engines of one
// file would each cache its header and could interleave partial-block writes), and an engine still in use by a
// request is never dropped (it is listed again at its next use instead).
//
// Lock order: EngineSlot::mu_ and EngineCache::mu_ are never held together.
#pragma once

#include <cstddef>
#include <functional>
#include <list>
#include <memory>
#include <mutex>

#include "veilfs/content/content_file.hpp"

namespace veil::fuse {

// Where one inode's engine lives (a member of Inode); its fields belong to EngineCache alone.
class EngineSlot {
 public:
  EngineSlot() = default;
  EngineSlot(const EngineSlot&) = delete;
  EngineSlot& operator=(const EngineSlot&) = delete;

 private:
  friend class EngineCache;
  std::mutex mu_;  // guards engine_ and writable_; engines are made under it
  std::shared_ptr<ContentFile> engine_;
  bool writable_ = false;
  // --- guarded by EngineCache::mu_ ---
  bool listed_ = false;
  std::list<std::weak_ptr<EngineSlot>>::iterator pos_;
};

class EngineCache {
 public:
  explicit EngineCache(size_t cap) : cap_(cap) {}
  EngineCache(const EngineCache&) = delete;
  EngineCache& operator=(const EngineCache&) = delete;

  struct Made {
    std::shared_ptr<ContentFile> engine;
    bool writable = false;
  };
  // The slot's engine, made with make() when there is none or when a writable one is needed and the cached one
  // is read-only (make runs under the slot's lock: no second engine can appear meanwhile). Marks it most recently
  // used and evicts beyond the cap. `slot` must keep its owner alive (an aliasing shared_ptr to the Inode).
  std::shared_ptr<ContentFile> get(const std::shared_ptr<EngineSlot>& slot, bool write,
                                   const std::function<Made()>& make);
  // The cached engine, or null; never makes one and does not count as a use.
  std::shared_ptr<ContentFile> cached(EngineSlot& slot) const;
  // The inode is forgotten: its engine goes (closing its descriptor once the last request using it is done).
  void drop(EngineSlot& slot);
  // Another writer may have replaced the file under its name (a share such as sshfs then reaches the new one only
  // through a new descriptor): the engine goes unless a request still uses it, then its header is forgotten.
  void refresh(EngineSlot& slot);
  size_t listed() const;  // slots in the LRU (tests)

 private:
  void touch(const std::shared_ptr<EngineSlot>& slot);

  const size_t cap_;
  mutable std::mutex mu_;
  std::list<std::weak_ptr<EngineSlot>> lru_;  // most recent first
};

}  // namespace veil::fuse
