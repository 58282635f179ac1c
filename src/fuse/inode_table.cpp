#include "fuse/inode_table.hpp"

#include <fcntl.h>

#include "fuse/fuse_api.hpp"
#include "veilfs/util/error.hpp"

namespace veil::fuse {

InodeTable::InodeTable(UniqueFd root_path_fd, const struct stat& root_st, size_t fd_cap)
    : root_(new Inode(root_st.st_dev, root_st.st_ino, S_IFDIR)), fd_cap_(fd_cap) {
  root_->fd = std::make_shared<const UniqueFd>(std::move(root_path_fd));
  root_->pinned = true;
  root_->nlookup = 1;
  index_[{root_st.st_dev, root_st.st_ino}] = root_;
}

InodeTable::~InodeTable() {
  std::vector<std::shared_ptr<Inode>> all;
  {
    std::lock_guard lk(mu_);
    for (auto& [key, weak] : index_)
      if (auto n = weak.lock()) all.push_back(std::move(n));
    for (auto& weak : unindexed_)
      if (auto n = weak.lock()) all.push_back(std::move(n));
    lru_.clear();
    for (auto& n : all) {
      n->self.reset();
      n->parent.reset();
      n->in_lru = false;
    }
    index_.clear();
    unindexed_.clear();
  }
}

Inode& InodeTable::get(uint64_t ino) {
  if (ino == FUSE_ROOT_ID) return *root_;
  return *reinterpret_cast<Inode*>(static_cast<uintptr_t>(ino));
}

uint64_t InodeTable::fuse_ino(const Inode& n) const {
  if (&n == root_.get()) return FUSE_ROOT_ID;
  return static_cast<uint64_t>(reinterpret_cast<uintptr_t>(&n));
}

std::shared_ptr<Inode> InodeTable::intern(Inode& parent, const std::string& name, const struct stat& st, UniqueFd fd,
                                          bool fresh, uint64_t birth) {
  std::vector<std::shared_ptr<Inode>> dropped;  // destroyed after the lock is released
  std::lock_guard lk(mu_);
  Key key{st.st_dev, st.st_ino};
  std::shared_ptr<Inode> n;
  if (auto it = index_.find(key); it != index_.end()) {
    n = it->second.lock();
    // Same number, other type: the backing inode was freed and reused behind our back; start afresh.
    if (n && (fresh || n->type != (st.st_mode & S_IFMT) || (birth && n->birth && n->birth != birth))) {
      unindexed_.push_back(n);
      n.reset();
    }
  }
  if (!n) {
    n.reset(new Inode(st.st_dev, st.st_ino, st.st_mode & S_IFMT));
    index_[key] = n;
    sweep_locked();
  }
  if (birth && !n->birth) n->birth = birth;
  if (n.get() == root_.get()) {
    ++n->nlookup;
    return n;
  }
  n->parent = parent.shared_from_this();
  n->name = name;
  if (n->nlookup++ == 0) n->self = n;
  if (fd && !n->fd) cache_fd_locked(*n, std::make_shared<const UniqueFd>(std::move(fd)), dropped);
  return n;
}

std::shared_ptr<Inode> InodeTable::find(dev_t dev, ino_t ino) {
  std::lock_guard lk(mu_);
  auto it = index_.find({dev, ino});
  return it == index_.end() ? nullptr : it->second.lock();
}

bool InodeTable::forget(Inode& n, uint64_t count) {
  std::vector<std::shared_ptr<Inode>> dropped;
  // Closed after the lock is released: the last descriptor of an unlinked file frees it on the backing disk.
  FdPtr closing;
  std::lock_guard lk(mu_);
  if (&n == root_.get() || n.nlookup == 0) return false;  // a repeated forget changes nothing
  n.nlookup = count >= n.nlookup ? 0 : n.nlookup - count;
  if (n.nlookup > 0) return false;
  if (n.in_lru) {
    dropped.push_back(*n.lru_pos);
    lru_.erase(n.lru_pos);
    n.in_lru = false;
    --cached_;
  }
  closing = std::move(n.fd);
  n.pinned = false;
  // Its index entry stays while anybody (a child's parent link, an open handle) keeps the Inode alive, so that
  // a lookup finds the same Inode; expired entries go in sweep_locked().
  dropped.push_back(std::move(n.self));
  return true;
}

void InodeTable::sweep_locked() {
  // Amortized O(1) per insert: a sweep runs when the index has doubled since the last one.
  if (index_.size() + unindexed_.size() < 2 * swept_size_ + 64) return;
  std::erase_if(index_, [](const auto& kv) { return kv.second.expired(); });
  std::erase_if(unindexed_, [](const auto& w) { return w.expired(); });
  swept_size_ = index_.size() + unindexed_.size();
}

void InodeTable::unindex(Inode& n) {
  std::lock_guard lk(mu_);
  auto it = index_.find({n.dev, n.ino});
  if (it != index_.end() && it->second.lock().get() == &n) {
    index_.erase(it);
    unindexed_.push_back(n.weak_from_this());  // still freed with the table (it may be linked in a cycle)
  }
}

size_t InodeTable::index_entries() {
  std::lock_guard lk(mu_);
  return index_.size() + unindexed_.size();
}

std::pair<std::shared_ptr<Inode>, std::string> InodeTable::location(Inode& n) {
  std::lock_guard lk(mu_);
  return {n.parent, n.name};
}

void InodeTable::set_location(Inode& n, Inode& parent, const std::string& name) {
  std::lock_guard lk(mu_);
  if (&n == root_.get()) return;
  n.parent = parent.shared_from_this();
  n.name = name;
}

void InodeTable::cache_fd_locked(Inode& n, FdPtr fd, std::vector<std::shared_ptr<Inode>>& dropped) {
  n.fd = std::move(fd);
  if (n.pinned) return;
  lru_.push_front(n.shared_from_this());
  n.lru_pos = lru_.begin();
  n.in_lru = true;
  ++cached_;
  while (cached_ > fd_cap_ && !lru_.empty()) {
    auto victim = std::move(lru_.back());
    lru_.pop_back();
    victim->in_lru = false;
    victim->fd.reset();
    --cached_;
    dropped.push_back(std::move(victim));
  }
}

FdPtr InodeTable::fd(Inode& n) {
  std::vector<std::shared_ptr<Inode>> dropped;
  for (int attempt = 0; attempt < 3; ++attempt) {
    std::shared_ptr<Inode> parent;
    std::string name;
    {
      std::lock_guard lk(mu_);
      if (n.fd) {
        if (n.in_lru && n.lru_pos != lru_.begin()) lru_.splice(lru_.begin(), lru_, n.lru_pos);
        return n.fd;
      }
      parent = n.parent;
      name = n.name;
    }
    if (!parent) throw Error(ErrorKind::NotFound, ENOENT, "inode has no location");
    FdPtr pfd = fd(*parent);
    UniqueFd f(::openat(pfd->get(), name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    struct stat st;
    bool same = f && ::fstatat(f.get(), "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == 0 && st.st_dev == n.dev &&
                st.st_ino == n.ino;
    std::lock_guard lk(mu_);
    if (n.fd) return n.fd;
    if (same) {
      auto made = std::make_shared<const UniqueFd>(std::move(f));
      // An inode the kernel has forgotten (its parents, while a last write is synced) is not cached: nothing
      // would ever close it.
      if (n.nlookup == 0 && &n != root_.get()) return made;
      cache_fd_locked(n, std::move(made), dropped);
      return n.fd;
    }
    // The location moved under us (a concurrent rename) or the object is gone: retry, then give up.
    if (n.parent == parent && n.name == name) break;
  }
  throw Error(ErrorKind::NotFound, ENOENT, "inode is gone");
}

FdPtr InodeTable::cached_fd(Inode& n) {
  std::lock_guard lk(mu_);
  return n.fd;
}

void InodeTable::pin(Inode& n) {
  if (&n == root_.get()) return;
  FdPtr f = fd(n);
  std::lock_guard lk(mu_);
  if (n.in_lru) {
    // Moving out of the LRU: the Inode stays alive through its `self` or its holders.
    auto keep = std::move(*n.lru_pos);
    lru_.erase(n.lru_pos);
    n.in_lru = false;
    --cached_;
    n.pinned = true;
    n.fd = f;
    return;
  }
  n.pinned = true;
  n.fd = f;
}

}  // namespace veil::fuse
