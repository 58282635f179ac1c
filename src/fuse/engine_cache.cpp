#include "fuse/engine_cache.hpp"

#include <vector>

namespace veil::fuse {

std::shared_ptr<ContentFile> EngineCache::get(const std::shared_ptr<EngineSlot>& slot, bool write,
                                              const std::function<Made()>& make) {
  std::shared_ptr<ContentFile> engine;
  {
    std::lock_guard lk(slot->mu_);
    if (!slot->engine_ || (write && !slot->writable_)) {
      Made m = make();
      slot->engine_ = std::move(m.engine);
      slot->writable_ = m.writable;
    }
    engine = slot->engine_;
  }
  touch(slot);
  return engine;
}

void EngineCache::touch(const std::shared_ptr<EngineSlot>& slot) {
  std::vector<std::shared_ptr<EngineSlot>> victims;
  {
    std::lock_guard lk(mu_);
    if (slot->listed_) {
      if (slot->pos_ != lru_.begin()) lru_.splice(lru_.begin(), lru_, slot->pos_);
    } else {
      lru_.push_front(slot);
      slot->pos_ = lru_.begin();
      slot->listed_ = true;
    }
    while (lru_.size() > cap_) {
      auto victim = lru_.back().lock();
      lru_.pop_back();
      if (!victim) continue;  // its inode is gone, and the engine with it
      victim->listed_ = false;
      victims.push_back(std::move(victim));
    }
  }
  for (auto& v : victims) {
    std::lock_guard lk(v->mu_);
    // Still in use by a request: it stays (and is listed again at its next use), so that no second engine
    // for the same file is ever made while this one works.
    if (v->engine_.use_count() == 1) v->engine_.reset();
  }
}

std::shared_ptr<ContentFile> EngineCache::cached(EngineSlot& slot) const {
  std::lock_guard lk(slot.mu_);
  return slot.engine_;
}

void EngineCache::drop(EngineSlot& slot) {
  {
    std::lock_guard lk(slot.mu_);
    slot.engine_.reset();
  }
  std::lock_guard lk(mu_);
  if (slot.listed_) {
    lru_.erase(slot.pos_);
    slot.listed_ = false;
  }
}

void EngineCache::refresh(EngineSlot& slot) {
  std::shared_ptr<ContentFile> busy;
  {
    std::lock_guard lk(slot.mu_);
    if (!slot.engine_) return;
    if (slot.engine_.use_count() == 1) {
      slot.engine_.reset();  // stays listed until evicted or dropped: harmless, it holds nothing
      return;
    }
    busy = slot.engine_;
  }
  busy->forget_header();  // outside the slot lock: it waits for the requests using the engine
}

size_t EngineCache::listed() const {
  std::lock_guard lk(mu_);
  return lru_.size();
}

}  // namespace veil::fuse
