#include "replay.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <random>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>

namespace veil::crash {

namespace {

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error(what + ": " + std::strerror(errno)); }

std::string read_whole(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) fail("open " + path);
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      ::close(fd);
      fail("read " + path);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

void scan_into(Tree& t, const std::string& path, uint64_t id) {
  DIR* d = ::opendir(path.c_str());
  if (!d) fail("opendir " + path);
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  ::closedir(d);
  for (const auto& n : names) {
    const std::string p = path + "/" + n;
    struct stat st;
    if (::lstat(p.c_str(), &st) != 0) fail("lstat " + p);
    const uint64_t cid = st.st_ino;
    t.nodes[id].entries[n] = cid;
    if (t.nodes.count(cid)) continue;  // another name of an object already scanned
    Node& c = t.nodes[cid];
    c.type = st.st_mode & S_IFMT;
    c.perm = st.st_mode & 07777;
    if (S_ISREG(st.st_mode)) {
      c.data = read_whole(p);
    } else if (S_ISLNK(st.st_mode)) {
      char buf[65536];
      ssize_t k = ::readlink(p.c_str(), buf, sizeof buf);
      if (k < 0) fail("readlink " + p);
      c.data.assign(buf, static_cast<size_t>(k));
    } else if (S_ISDIR(st.st_mode)) {
      scan_into(t, p, cid);
    }
  }
}

uint64_t fnv(std::string_view s, uint64_t h = 1469598103934665603ull) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

char type_char(mode_t t) {
  switch (t) {
    case S_IFREG:
      return 'f';
    case S_IFDIR:
      return 'd';
    case S_IFLNK:
      return 'l';
    default:
      return 'o';
  }
}

// Depth-first over the reachable tree in name order: fn(path, node, id, first path of the same object or "").
void walk(const Tree& t, const std::function<void(const std::string&, const Node&, uint64_t, const std::string&)>& fn) {
  std::unordered_map<uint64_t, std::string> seen;
  std::function<void(uint64_t, const std::string&)> rec = [&](uint64_t id, const std::string& path) {
    const Node& d = t.nodes.at(id);
    for (const auto& [name, cid] : d.entries) {
      auto it = t.nodes.find(cid);
      if (it == t.nodes.end()) continue;
      const std::string p = path + "/" + name;
      auto [pos, fresh] = seen.emplace(cid, p);
      fn(p, it->second, cid, fresh ? std::string() : pos->second);
      if (fresh && it->second.type == S_IFDIR) rec(cid, p);
    }
  };
  rec(t.root, "");
}

}  // namespace

Tree scan_tree(const std::string& dir) {
  Tree t;
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) fail("stat " + dir);
  t.root = st.st_ino;
  Node& r = t.nodes[t.root];
  r.type = S_IFDIR;
  r.perm = st.st_mode & 07777;
  scan_into(t, dir, t.root);
  return t;
}

void materialize(const Tree& t, const std::string& dir) {
  std::vector<std::pair<std::string, mode_t>> dir_perms;  // set after their contents are in
  walk(t, [&](const std::string& rel, const Node& n, uint64_t, const std::string& first) {
    const std::string p = dir + rel;
    if (!first.empty()) {
      if (n.type == S_IFDIR) return;  // reachable twice: only a lost rename does that; written once
      if (::link((dir + first).c_str(), p.c_str()) != 0) fail("link " + p);
      return;
    }
    switch (n.type) {
      case S_IFDIR:
        if (::mkdir(p.c_str(), 0700) != 0) fail("mkdir " + p);
        dir_perms.emplace_back(p, n.perm);
        break;
      case S_IFREG: {
        int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0) fail("create " + p);
        size_t done = 0;
        while (done < n.data.size()) {
          ssize_t k = ::write(fd, n.data.data() + done, n.data.size() - done);
          if (k <= 0) {
            ::close(fd);
            fail("write " + p);
          }
          done += static_cast<size_t>(k);
        }
        if (::fchmod(fd, n.perm) != 0) fail("chmod " + p);
        ::close(fd);
        break;
      }
      case S_IFLNK:
        if (::symlink(n.data.c_str(), p.c_str()) != 0) fail("symlink " + p);
        break;
      default:
        if (::mknod(p.c_str(), n.type | n.perm, 0) != 0) fail("mknod " + p);
        break;
    }
  });
  for (auto it = dir_perms.rbegin(); it != dir_perms.rend(); ++it) ::chmod(it->first.c_str(), it->second);
}

std::vector<std::string> describe(const Tree& t) {
  std::vector<std::string> out;
  walk(t, [&](const std::string& p, const Node& n, uint64_t, const std::string& first) {
    char buf[96];
    std::snprintf(buf, sizeof buf, " %c %04o %zu %016llx", type_char(n.type), static_cast<unsigned>(n.perm),
                  n.type == S_IFDIR ? size_t{0} : n.data.size(),
                  static_cast<unsigned long long>(n.type == S_IFDIR ? 0 : fnv(n.data)));
    out.push_back(p + buf + (first.empty() ? "" : " =" + first));
  });
  std::sort(out.begin(), out.end());
  return out;
}

uint64_t tree_hash(const Tree& t) {
  uint64_t h = 1469598103934665603ull;
  walk(t, [&](const std::string& p, const Node& n, uint64_t, const std::string& first) {
    h = fnv(p, h);
    const char tag[2] = {type_char(n.type), '\0'};
    h = fnv(std::string_view(tag, 2), h);
    if (!first.empty()) {
      h = fnv(first, h);
    } else if (n.type != S_IFDIR) {
      h = fnv(n.data, h);
      h = fnv(std::to_string(n.data.size()), h);
    }
    h = fnv(std::to_string(n.perm), h);
  });
  return h;
}

bool LoggedOp::changes_state() const {
  switch (rec.op) {
    case Op::Create:
    case Op::Link:
    case Op::Unlink:
    case Op::Rename:
    case Op::Write:
    case Op::Truncate:
    case Op::Falloc:
    case Op::Chmod:
      return true;
    default:
      return false;
  }
}

Log parse_log(const Tree& initial, std::string_view bytes, int baseline_step, size_t tear) {
  Log log;
  log.initial = initial;
  std::unordered_map<uint64_t, uint64_t> live;  // inode number -> model id
  for (const auto& [id, n] : initial.nodes) live[id] = id;
  uint64_t next_id = uint64_t{1} << 62;
  int step = -1;
  bool baseline_seen = baseline_step < 0;
  size_t index = 0;
  auto resolve = [&](uint64_t ino, const Record& r, const char* what) -> uint64_t {
    auto it = live.find(ino);
    if (it == live.end())
      throw std::runtime_error("log record " + std::to_string(index) + " (" + r.call + " " + r.path + "): " + what +
                               " inode " + std::to_string(ino) + " was never created in the log nor in the snapshot");
    return it->second;
  };
  while (!bytes.empty()) {
    LoggedOp op;
    if (!decode(bytes, op.rec)) throw std::runtime_error("damaged log record " + std::to_string(index));
    const Record& r = op.rec;
    op.step = step;
    switch (r.op) {
      case Op::Create: {
        op.dir = resolve(r.dir, r, "parent directory");
        op.id = next_id++;
        live[r.ino] = op.id;
        Node& b = log.births[op.id];
        b.type = static_cast<mode_t>(r.mode) & S_IFMT;
        b.perm = static_cast<mode_t>(r.mode) & 07777;
        if (b.type == S_IFLNK) b.data = r.data;
        break;
      }
      case Op::Link:
      case Op::Unlink:
        op.dir = resolve(r.dir, r, "parent directory");
        op.id = resolve(r.ino, r, "object");
        break;
      case Op::Rename:
        op.dir = resolve(r.dir, r, "source directory");
        op.dir2 = resolve(r.dir2, r, "target directory");
        op.id = resolve(r.ino, r, "object");
        if (r.ino2) op.id2 = resolve(r.ino2, r, "replaced object");
        break;
      case Op::Write:
      case Op::Truncate:
      case Op::Falloc:
      case Op::Chmod:
      case Op::Fsync:
        op.id = resolve(r.ino, r, "object");
        break;
      case Op::Syncfs:
        break;
      case Op::Mark:
        step = static_cast<int>(r.off);
        log.last_step = std::max(log.last_step, step);
        if (!baseline_seen && step == baseline_step) {
          baseline_seen = true;
          log.baseline = index + 1;
        }
        break;
      default:
        throw std::runtime_error("unknown operation in log record " + std::to_string(index));
    }
    if (r.op == Op::Write && tear > 0 && r.data.size() > 0 && r.off / tear != (r.off + r.data.size() - 1) / tear) {
      // Torn: one operation per page the write touches.
      const std::string data = op.rec.data;
      const uint64_t off = op.rec.off;
      const size_t pieces = (off + data.size() - 1) / tear - off / tear + 1;
      size_t k = 0;
      for (uint64_t at = off; at < off + data.size(); ++k) {
        const uint64_t end = std::min<uint64_t>((at / tear + 1) * tear, off + data.size());
        LoggedOp piece = op;
        piece.rec.off = at;
        piece.rec.data = data.substr(at - off, end - at);
        piece.rec.call = op.rec.call + " (page " + std::to_string(k + 1) + "/" + std::to_string(pieces) + ")";
        log.ops.push_back(std::move(piece));
        at = end;
      }
    } else {
      log.ops.push_back(std::move(op));
    }
    ++index;
  }
  if (!baseline_seen) throw std::runtime_error("the log has no baseline mark " + std::to_string(baseline_step));
  return log;
}

void apply(Tree& t, const Log& log, size_t index) {
  const LoggedOp& op = log.ops[index];
  const Record& r = op.rec;
  // An object whose creation was lost exists all the same once a later operation on it is on disk.
  auto object = [&](uint64_t id) -> Node* {
    auto it = t.nodes.find(id);
    if (it != t.nodes.end()) return &it->second;
    auto b = log.births.find(id);
    if (b == log.births.end()) return nullptr;
    return &(t.nodes[id] = b->second);
  };
  auto dir = [&](uint64_t id) -> Node* {
    Node* n = object(id);
    return n && n->type == S_IFDIR ? n : nullptr;
  };
  auto unbind = [](Node* d, const std::string& name, uint64_t id) {
    if (!d) return;
    auto it = d->entries.find(name);
    if (it != d->entries.end() && it->second == id) d->entries.erase(it);
  };
  switch (r.op) {
    case Op::Create:
      if (object(op.id))
        if (Node* d = dir(op.dir)) d->entries[r.name] = op.id;
      break;
    case Op::Link:
      if (Node* d = dir(op.dir); d && object(op.id)) d->entries[r.name] = op.id;
      break;
    case Op::Unlink:
      unbind(dir(op.dir), r.name, op.id);
      break;
    case Op::Rename: {
      Node* d1 = dir(op.dir);
      Node* d2 = dir(op.dir2);
      if (r.flags & RENAME_EXCHANGE) {
        if (d1) {
          if (op.id2 && object(op.id2))
            d1->entries[r.name] = op.id2;
          else
            d1->entries.erase(r.name);
        }
        d2 = dir(op.dir2);
        if (d2 && object(op.id)) d2->entries[r.name2] = op.id;
      } else {
        unbind(d1, r.name, op.id);
        if (d2 && object(op.id)) d2->entries[r.name2] = op.id;
      }
      break;
    }
    case Op::Write:
      if (Node* n = object(op.id); n && n->type == S_IFREG) {
        if (n->data.size() < r.off + r.data.size()) n->data.resize(r.off + r.data.size(), '\0');
        std::copy(r.data.begin(), r.data.end(), n->data.begin() + static_cast<std::ptrdiff_t>(r.off));
      }
      break;
    case Op::Truncate:
      if (Node* n = object(op.id); n && n->type == S_IFREG) n->data.resize(r.off, '\0');
      break;
    case Op::Falloc:
      if (Node* n = object(op.id); n && n->type == S_IFREG) {
        const uint64_t end = r.off + r.len;
        if (r.flags & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) {
          const uint64_t e = std::min<uint64_t>(end, n->data.size());
          if (r.off < e) std::fill(n->data.begin() + static_cast<std::ptrdiff_t>(r.off), n->data.begin() + e, '\0');
        }
        if (!(r.flags & FALLOC_FL_KEEP_SIZE) && end > n->data.size()) n->data.resize(end, '\0');
      }
      break;
    case Op::Chmod:
      if (Node* n = object(op.id)) n->perm = static_cast<mode_t>(r.mode) & 07777;
      break;
    default:
      break;
  }
}

std::vector<size_t> forced_at(const Log& log) {
  const size_t n = log.ops.size();
  std::vector<size_t> forced(n, n);
  for (size_t j = 0; j < log.baseline && j < n; ++j) forced[j] = 0;  // the set-up phase is on disk
  std::vector<size_t> open;                                          // not yet forced, in order
  for (size_t s = log.baseline; s < n; ++s) {
    const LoggedOp& b = log.ops[s];
    if (b.is_barrier()) {
      std::vector<size_t> still;
      for (size_t j : open) {
        const LoggedOp& o = log.ops[j];
        bool covered = false;
        if (b.rec.op == Op::Syncfs) {
          covered = true;
        } else {
          switch (o.rec.op) {
            case Op::Write:
            case Op::Truncate:
            case Op::Falloc:
            case Op::Chmod:
              covered = o.id == b.id;
              break;
            case Op::Create:
            case Op::Link:
            case Op::Unlink:
              covered = o.dir == b.id;
              break;
            case Op::Rename:
              covered = o.dir == b.id || o.dir2 == b.id;
              break;
            default:
              break;
          }
        }
        if (covered)
          forced[j] = s;
        else
          still.push_back(j);
      }
      open.swap(still);
    } else if (b.changes_state()) {
      open.push_back(s);
    }
  }
  return forced;
}

namespace {

int step_at(const Log& log, size_t crash_at) {
  if (crash_at == 0) return -1;
  const LoggedOp& last = log.ops[crash_at - 1];
  return last.rec.op == Op::Mark ? static_cast<int>(last.rec.off) : last.step;
}

}  // namespace

Tree build_state(const Log& log, const CrashState& s) {
  Tree t = log.initial;
  size_t k = 0;
  for (size_t i = 0; i < s.crash_at; ++i) {
    if (k < s.dropped.size() && s.dropped[k] == i) {
      ++k;
      continue;
    }
    apply(t, log, i);
  }
  return t;
}

std::vector<Explored> crash_states(const Log& log, const ExploreLimits& limits, size_t* candidates) {
  const size_t n = log.ops.size();
  const std::vector<size_t> forced = forced_at(log);
  struct Key {
    uint64_t hash;
    int step;
    bool operator==(const Key& o) const { return hash == o.hash && step == o.step; }
  };
  struct KeyHash {
    size_t operator()(const Key& k) const { return k.hash ^ (static_cast<uint64_t>(k.step) * 0x9e3779b97f4a7c15ull); }
  };
  std::unordered_set<Key, KeyHash> seen;
  std::vector<Explored> prefixes, drops, priority;
  auto add = [&](std::vector<Explored>& into, CrashState s, const Tree& t) {
    s.step = step_at(log, s.crash_at);
    Explored e{std::move(s), tree_hash(t)};
    if (seen.insert({e.hash, e.state.step}).second) into.push_back(std::move(e));
  };

  // Prefixes, and for each operation the prefixes that lack it (from the state right after its successor to
  // the last state before its barrier).
  Tree prefix = log.initial;
  for (size_t i = 0; i < log.baseline; ++i) apply(prefix, log, i);
  for (size_t i = log.baseline; i <= n; ++i) {
    add(prefixes, CrashState{i, {}, 0, CrashState::Kind::Prefix}, prefix);
    if (i < n) apply(prefix, log, i);
  }
  prefix = log.initial;
  for (size_t i = 0; i < log.baseline; ++i) apply(prefix, log, i);
  for (size_t j = log.baseline; j < n; ++j) {
    if (log.ops[j].changes_state()) {
      Tree t = prefix;  // ops [0, j)
      const size_t last = std::min(n, forced[j]);
      for (size_t i = j + 1; i <= last; ++i) {
        // t holds ops [0, i) without j
        if (i >= j + 2) {
          const bool after_mark = log.ops[i - 1].rec.op == Op::Mark;
          const bool wanted = i == j + 2 || i == last || after_mark;
          add(wanted ? priority : drops, CrashState{i, {j}, 0, CrashState::Kind::DropOne}, t);
        }
        if (i < n) apply(t, log, i);
      }
    }
    apply(prefix, log, j);
  }

  // Several operations lost at once: every set at the crash points that matter most, when they are few, and a
  // seeded sample at random crash points.
  std::mt19937_64 rng(limits.seed);
  std::vector<Explored> many;
  auto pool_at = [&](size_t at) {
    std::vector<size_t> pool;
    for (size_t j = log.baseline; j < at; ++j)
      if (droppable(log, forced, j, at)) pool.push_back(j);
    return pool;
  };
  for (size_t at = log.baseline + 1; at <= n; ++at) {
    const bool after_mark = log.ops[at - 1].rec.op == Op::Mark;
    const bool before_barrier = at < n && log.ops[at].is_barrier();
    if (!after_mark && !before_barrier && at != n) continue;
    const auto pool = pool_at(at);
    if (pool.size() < 2 || pool.size() > limits.exhaustive_pool) continue;
    for (uint64_t mask = 1; mask < (uint64_t{1} << pool.size()); ++mask) {
      if (__builtin_popcountll(mask) < 2) continue;
      CrashState s{at, {}, 0, CrashState::Kind::DropMany};
      for (size_t b = 0; b < pool.size(); ++b)
        if (mask & (uint64_t{1} << b)) s.dropped.push_back(pool[b]);
      add(many, s, build_state(log, s));
    }
  }
  for (size_t k = 0; k < limits.random_subsets && n > log.baseline + 1; ++k) {
    const size_t at = log.baseline + 1 + rng() % (n - log.baseline);
    std::vector<size_t> pool = pool_at(at);
    if (pool.size() < 2) continue;
    std::shuffle(pool.begin(), pool.end(), rng);
    pool.resize(2 + rng() % std::min<size_t>(pool.size() - 1, 7));
    std::sort(pool.begin(), pool.end());
    CrashState s{at, pool, 0, CrashState::Kind::DropMany};
    add(many, s, build_state(log, s));
  }

  if (candidates) *candidates = prefixes.size() + priority.size() + drops.size() + many.size();
  std::vector<Explored> out = std::move(prefixes);
  auto left = [&] { return limits.max_states > out.size() ? limits.max_states - out.size() : size_t{0}; };
  auto take = [&](std::vector<Explored>& from, size_t room) {
    if (from.size() > room) {
      std::shuffle(from.begin(), from.end(), rng);
      from.resize(room);
      std::sort(from.begin(), from.end(), [](const Explored& a, const Explored& b) {
        return a.state.crash_at != b.state.crash_at ? a.state.crash_at < b.state.crash_at
                                                    : a.state.dropped < b.state.dropped;
      });
    }
    for (auto& e : from) out.push_back(std::move(e));
  };
  take(priority, left());
  take(drops, left());
  take(many, left());
  return out;
}

}  // namespace veil::crash
