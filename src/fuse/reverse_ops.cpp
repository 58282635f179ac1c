// Reverse mode's FUSE operations: a read-only translation of ReverseView (veilfs/reverse/reverse_view.hpp).
// Node ids name view paths; the view decides what each stands for. The mount itself is read-only ("ro"), so the
// kernel refuses every change with EROFS before it could reach here.
#include "fuse/reverse_ops.hpp"

#include <sys/statvfs.h>

#include <cerrno>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <unordered_map>

#include "fuse/errno_boundary.hpp"
#include "fuse/log.hpp"
#include "veilfs/format/constants.hpp"
#include "veilfs/util/error.hpp"

namespace veil::fuse {
namespace {

// Entries and attributes are cached for a second, as by forward mode: a backup tool's quick check compares
// whole seconds anyway. What could go stale matters only for reading a file, and view files are read with
// direct I/O (see op_open), so a size the kernel still has from before never cuts a read short.
constexpr double kTimeout = 1.0;

// Node id -> view node. One id per view path (its parent's id and name), so a second lookup finds the first.
class Nodes {
 public:
  explicit Nodes(reverse::Node root) { nodes_[FUSE_ROOT_ID] = {std::move(root), "", 1}; }
  reverse::Node get(uint64_t id) {
    std::lock_guard lk(mu_);
    auto it = nodes_.find(id);
    if (it == nodes_.end()) throw_errno(ESTALE);
    return it->second.node;
  }
  uint64_t intern(uint64_t parent, const std::string& name, reverse::Node node) {
    std::lock_guard lk(mu_);
    const std::string key = std::to_string(parent) + "/" + name;
    auto it = by_path_.find(key);
    if (it != by_path_.end()) {
      Entry& e = nodes_.at(it->second);
      e.node = std::move(node);  // the plain object may have been replaced: the newest answer stands
      ++e.nlookup;
      return it->second;
    }
    const uint64_t id = next_++;
    nodes_[id] = {std::move(node), key, 1};
    by_path_[key] = id;
    return id;
  }
  void forget(uint64_t id, uint64_t n) {
    std::lock_guard lk(mu_);
    auto it = nodes_.find(id);
    if (it == nodes_.end() || id == FUSE_ROOT_ID) return;
    if (it->second.nlookup > n) {
      it->second.nlookup -= n;
      return;
    }
    by_path_.erase(it->second.key);
    nodes_.erase(it);
  }

 private:
  struct Entry {
    reverse::Node node;
    std::string key;
    uint64_t nlookup = 0;
  };
  std::mutex mu_;
  std::unordered_map<uint64_t, Entry> nodes_;
  std::unordered_map<std::string, uint64_t> by_path_;
  uint64_t next_ = FUSE_ROOT_ID + 1;
};

struct ReverseSession {
  const reverse::ReverseView* view;
  Nodes nodes;
  std::atomic<uint64_t> requests{0};
};

ReverseSession& session_of(fuse_req_t req) {
  auto& s = *static_cast<ReverseSession*>(fuse_req_userdata(req));
  s.requests.fetch_add(1, std::memory_order_relaxed);
  return s;
}

void op_init(void*, fuse_conn_info* conn) {
  conn->max_readahead = 1u << 20;
  // Read-only and nothing cached across opens (the plain tree changes under us): no writeback cache, no locks.
  conn->want &= ~(FUSE_CAP_WRITEBACK_CACHE | FUSE_CAP_POSIX_LOCKS | FUSE_CAP_FLOCK_LOCKS | FUSE_CAP_ASYNC_DIO);
  for (unsigned cap : {FUSE_CAP_ASYNC_READ, FUSE_CAP_READDIRPLUS, FUSE_CAP_PARALLEL_DIROPS})
    if (conn->capable & cap) conn->want |= cap;
  conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;  // always plus: every listing of a backup is followed by stats
}

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  with_errno(req, [&] {
    auto& s = session_of(req);
    auto dir = s.nodes.get(parent);
    auto node = s.view->lookup(dir, name);
    if (!node) throw_errno(ENOENT);
    fuse_entry_param e{};
    e.attr = s.view->attributes(*node);
    e.attr_timeout = e.entry_timeout = kTimeout;
    e.ino = s.nodes.intern(parent, name, std::move(*node));
    if (fuse_reply_entry(req, &e) != 0) s.nodes.forget(e.ino, 1);
  });
}

void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t n) {
  static_cast<ReverseSession*>(fuse_req_userdata(req))->nodes.forget(ino, n);
  fuse_reply_none(req);
}

void op_forget_multi(fuse_req_t req, size_t count, fuse_forget_data* list) {
  auto* s = static_cast<ReverseSession*>(fuse_req_userdata(req));
  for (size_t i = 0; i < count; ++i) s->nodes.forget(list[i].ino, list[i].nlookup);
  fuse_reply_none(req);
}

void op_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  with_errno(req, [&] {
    auto& s = session_of(req);
    struct stat st = s.view->attributes(s.nodes.get(ino));
    fuse_reply_attr(req, &st, kTimeout);
  });
}

void op_readlink(fuse_req_t req, fuse_ino_t ino) {
  with_errno(req, [&] {
    auto& s = session_of(req);
    fuse_reply_readlink(req, s.view->readlink(s.nodes.get(ino)).c_str());
  });
}

void op_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  with_errno(req, [&] {
    if ((fi->flags & O_ACCMODE) != O_RDONLY) throw_errno(EROFS);
    auto& s = session_of(req);
    auto reader = s.view->open(s.nodes.get(ino));
    fi->fh = reinterpret_cast<uint64_t>(reader.get());
    fi->keep_cache = 0;  // each open reads the plain file as it is now
    // Direct I/O: no page cache, and reads not limited by a size the kernel cached before the file changed
    // (the reader itself fails a read once the plain file differs from what it opened: ESTALE).
    fi->direct_io = 1;
    if (fuse_reply_open(req, fi) == 0) reader.release();
  });
}

void op_read(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
  with_errno(req, [&] {
    session_of(req);
    auto* reader = reinterpret_cast<const reverse::ReverseView::Reader*>(fi->fh);
    std::unique_ptr<uint8_t[]> buf(new uint8_t[size]);
    const size_t n = reader->read(static_cast<uint64_t>(off), std::span(buf.get(), size));
    fuse_reply_buf(req, reinterpret_cast<const char*>(buf.get()), n);
  });
}

void op_release(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  delete reinterpret_cast<reverse::ReverseView::Reader*>(fi->fh);
  fuse_reply_err(req, 0);
}

// A directory handle: the listing taken at opendir, served from it in pieces (offsets are indexes).
struct DirHandle {
  std::vector<reverse::ReverseView::Entry> entries;
};

void op_opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  with_errno(req, [&] {
    auto& s = session_of(req);
    auto h = std::make_unique<DirHandle>();
    h->entries = s.view->list(s.nodes.get(ino));
    fi->fh = reinterpret_cast<uint64_t>(h.get());
    if (fuse_reply_open(req, fi) == 0) h.release();
  });
}

void op_readdir(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
  with_errno(req, [&] {
    session_of(req);
    auto* h = reinterpret_cast<DirHandle*>(fi->fh);
    std::string buf(size, '\0');
    size_t used = 0;
    for (size_t i = static_cast<size_t>(off); i < h->entries.size(); ++i) {
      const auto& e = h->entries[i];
      struct stat st {};
      st.st_ino = i + 2;  // never 0: readdir(3) skips entries whose inode number is 0; stat tells the real one
      using reverse::Kind;
      st.st_mode = e.node.kind == Kind::Dir       ? S_IFDIR
                   : e.node.kind == Kind::Symlink ? S_IFLNK
                   : e.node.kind == Kind::Special ? 0
                                                  : S_IFREG;
      const size_t need =
          fuse_add_direntry(req, buf.data() + used, size - used, e.name.c_str(), &st, static_cast<off_t>(i + 1));
      if (need > size - used) break;
      used += need;
    }
    fuse_reply_buf(req, buf.data(), used);
  });
}

// The listing with each entry's attributes: a backup tool's lstat of every entry then needs no request.
void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  with_errno(req, [&] {
    auto& s = session_of(req);
    auto* h = reinterpret_cast<DirHandle*>(fi->fh);
    std::string buf(size, '\0');
    size_t used = 0;
    for (size_t i = static_cast<size_t>(off); i < h->entries.size(); ++i) {
      const auto& e = h->entries[i];
      fuse_entry_param p{};
      try {
        p.attr = s.view->attributes(e.node);
      } catch (const Error&) {
        continue;  // gone since the listing: left out, as a later lookup would not find it either
      }
      p.attr_timeout = p.entry_timeout = kTimeout;
      const size_t need = fuse_add_direntry_plus(req, nullptr, 0, e.name.c_str(), &p, static_cast<off_t>(i + 1));
      if (need > size - used) break;
      p.ino = s.nodes.intern(ino, e.name, e.node);
      used +=
          fuse_add_direntry_plus(req, buf.data() + used, size - used, e.name.c_str(), &p, static_cast<off_t>(i + 1));
    }
    fuse_reply_buf(req, buf.data(), used);
  });
}

void op_releasedir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  delete reinterpret_cast<DirHandle*>(fi->fh);
  fuse_reply_err(req, 0);
}

void op_statfs(fuse_req_t req, fuse_ino_t) {
  with_errno(req, [&] {
    auto& s = session_of(req);
    struct statvfs sv = s.view->statfs();
    sv.f_namemax = format::kMaxBackingNameSize;
    fuse_reply_statfs(req, &sv);
  });
}

const fuse_lowlevel_ops& ops() {
  static const fuse_lowlevel_ops o = [] {
    fuse_lowlevel_ops t{};
    t.init = op_init;
    t.lookup = op_lookup;
    t.forget = op_forget;
    t.forget_multi = op_forget_multi;
    t.getattr = op_getattr;
    t.readlink = op_readlink;
    t.open = op_open;
    t.read = op_read;
    t.release = op_release;
    t.opendir = op_opendir;
    t.readdir = op_readdir;
    t.readdirplus = op_readdirplus;
    t.releasedir = op_releasedir;
    t.statfs = op_statfs;
    return t;
  }();
  return o;
}

}  // namespace

int run_reverse_session(const reverse::ReverseView& view, const SessionOptions& opt) {
  ReverseSession session{&view, Nodes(view.root())};
  return serve(ops(), &session, opt, &session.requests);
}

}  // namespace veil::fuse
