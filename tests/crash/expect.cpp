#include "expect.hpp"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <set>

#include "fsck/checker.hpp"
#include "fuse/fs.hpp"
#include "fuse/fuse_api.hpp"
#include "veilfs/util/error.hpp"

namespace veil::crash {

// ---------------------------------------------------------------------------------------------------------
// Expectations

Expectations::Expectations() {
  Obj root;
  root.type = S_IFDIR;
  root.syncs.push_back(0);
  objs_.push_back(std::move(root));
}

void Expectations::begin_step(std::string what) {
  ++step_;
  step_names_.push_back(std::move(what));
}

std::string Expectations::step_name(int k) const {
  if (k < 0) return "before set-up";
  if (static_cast<size_t>(k) < step_names_.size()) return step_names_[static_cast<size_t>(k)];
  return "after the last step";
}

int Expectations::make(int dir, const std::string& name, mode_t type, std::string content) {
  Obj o;
  o.type = type;
  o.created_in = dir;
  o.created_as = name;
  if (type != S_IFDIR) o.versions.push_back({step_, std::move(content), false});
  objs_.push_back(std::move(o));
  const int id = static_cast<int>(objs_.size() - 1);
  bind(dir, name, id);
  return id;
}

void Expectations::set_content(int obj, std::string content) {
  objs_.at(obj).versions.push_back({step_, std::move(content), false});
}
void Expectations::allow(int obj, std::string content) {
  objs_.at(obj).versions.push_back({step_, std::move(content), true});
}

void Expectations::bind(int dir, const std::string& name, int obj) {
  names_[{dir, name}].emplace_back(step_, obj);
  if (obj == kNone)
    now_[dir].erase(name);
  else
    now_[dir][name] = obj;
}

void Expectations::synced(int obj) { objs_.at(obj).syncs.push_back(step_); }

void Expectations::baseline() {
  for (auto& o : objs_)
    if (o.syncs.empty() || o.syncs.back() != 0) o.syncs.push_back(0);
}

int Expectations::lookup(int dir, const std::string& name) const {
  auto d = now_.find(dir);
  if (d == now_.end()) return kNone;
  auto it = d->second.find(name);
  return it == d->second.end() ? kNone : it->second;
}

std::map<std::string, int> Expectations::entries(int dir) const {
  auto d = now_.find(dir);
  return d == now_.end() ? std::map<std::string, int>{} : d->second;
}

const std::string& Expectations::content(int obj) const {
  static const std::string empty;
  for (auto it = objs_.at(obj).versions.rbegin(); it != objs_.at(obj).versions.rend(); ++it)
    if (!it->inbetween) return it->content;
  return empty;
}

std::vector<std::pair<int, std::string>> Expectations::all_names() const {
  std::vector<std::pair<int, std::string>> out;
  for (const auto& [k, v] : names_) out.push_back(k);
  return out;
}

int Expectations::last_sync(int obj, int m) const {
  int s = -1;
  for (int k : objs_.at(obj).syncs)
    if (k <= m) s = std::max(s, k);
  return s;
}

Expectations::Binding Expectations::binding(int dir, const std::string& name, int m) const {
  Binding b;
  b.synced_step = last_sync(dir, m);
  std::set<int> allowed;
  auto it = names_.find({dir, name});
  const std::vector<std::pair<int, int>> none;
  const auto& events = it == names_.end() ? none : it->second;
  if (b.synced_step >= 0) {
    int at_sync = kNone;
    for (const auto& [step, obj] : events)
      if (step <= b.synced_step) at_sync = obj;
    allowed.insert(at_sync);
    for (const auto& [step, obj] : events)
      if (step > b.synced_step && step <= m + 1) allowed.insert(obj);
  } else {
    allowed.insert(kNone);
    for (const auto& [step, obj] : events)
      if (step <= m + 1) allowed.insert(obj);
  }
  b.may_be_absent = allowed.count(kNone) > 0;
  for (int o : allowed)
    if (o != kNone) b.objs.push_back(o);
  return b;
}

std::vector<std::string> Expectations::names(int dir) const {
  std::vector<std::string> out;
  for (auto it = names_.lower_bound({dir, std::string()}); it != names_.end() && it->first.first == dir; ++it)
    out.push_back(it->first.second);
  return out;
}

Expectations::Versions Expectations::versions(int obj, int m) const {
  Versions v;
  const Obj& o = objs_.at(obj);
  v.synced_step = last_sync(obj, m);
  auto add = [&](const Version& x) {
    v.contents.push_back(x.content);
    v.labels.push_back("step " + std::to_string(x.step) + (x.inbetween ? " in-between" : ""));
  };
  bool later = false;
  if (v.synced_step >= 0) {
    const Version* at_sync = nullptr;
    for (const auto& x : o.versions)
      if (x.step <= v.synced_step && !x.inbetween) at_sync = &x;
    if (at_sync) add(*at_sync);
    for (const auto& x : o.versions)
      if (x.step > v.synced_step && x.step <= m + 1) {
        add(x);
        later = true;
      }
  } else {
    for (const auto& x : o.versions)
      if (x.step <= m + 1) add(x);
  }
  v.exact = v.synced_step >= 0 && !later;
  return v;
}

// ---------------------------------------------------------------------------------------------------------
// Judging a state

bool content_allowed(const std::string& got, const std::vector<std::string>& versions, uint64_t block) {
  if (versions.empty()) return false;
  size_t lo = SIZE_MAX, hi = 0;
  bool size_ok = false;
  for (const auto& v : versions) {
    if (v == got) return true;
    size_ok = size_ok || v.size() == got.size();
    lo = std::min(lo, v.size());
    hi = std::max(hi, v.size());
  }
  if (!size_ok && !(got.size() % block == 0 && got.size() >= lo && got.size() <= hi)) return false;
  for (size_t off = 0; off < got.size(); off += block) {
    const size_t len = std::min<size_t>(block, got.size() - off);
    bool ok = false;
    for (const auto& v : versions) {
      bool same = true;
      for (size_t k = off; k < off + len && same; ++k) same = got[k] == (k < v.size() ? v[k] : '\0');
      if (same) {
        ok = true;
        break;
      }
    }
    if (!ok) return false;
  }
  return true;
}

namespace {

std::string what_of(const std::exception& e) {
  if (auto* ve = dynamic_cast<const Error*>(&e))
    return std::string(e.what()) + " (" + strerrorname_np(ve->sys_errno()) + ")";
  return e.what();
}

std::string kind_of(mode_t t) {
  switch (t) {
    case S_IFREG:
      return "file";
    case S_IFDIR:
      return "directory";
    case S_IFLNK:
      return "symlink";
    default:
      return "special file";
  }
}

std::string brief(const std::string& s) {
  std::string out = std::to_string(s.size()) + " bytes";
  if (s.empty()) return out;
  out += " [";
  static const char* hex = "0123456789abcdef";
  for (size_t i = 0; i < std::min<size_t>(s.size(), 8); ++i) {
    out += hex[static_cast<uint8_t>(s[i]) >> 4];
    out += hex[static_cast<uint8_t>(s[i]) & 15];
  }
  out += s.size() > 8 ? "...]" : "]";
  return out;
}

// Fs's warnings (skipped entries) go to stderr; they are collected per state instead of flooding the output.
class StderrCapture {
 public:
  StderrCapture() {
    std::fflush(stderr);
    mem_ = ::memfd_create("veilfs-crash-stderr", MFD_CLOEXEC);
    saved_ = ::dup(2);
    if (mem_ >= 0 && saved_ >= 0) ::dup2(mem_, 2);
  }
  ~StderrCapture() { restore(); }
  std::string restore() {
    std::string out;
    if (saved_ < 0) return out;
    std::fflush(stderr);
    ::dup2(saved_, 2);
    ::close(saved_);
    saved_ = -1;
    if (mem_ >= 0) {
      char buf[4096];
      ssize_t n;
      off_t at = 0;
      while ((n = ::pread(mem_, buf, sizeof buf, at)) > 0) {
        out.append(buf, static_cast<size_t>(n));
        at += n;
      }
      ::close(mem_);
      mem_ = -1;
    }
    return out;
  }

 private:
  int mem_ = -1, saved_ = -1;
};

class Walker {
 public:
  Walker(fuse::Fs& fs, const Expectations& e, int m, uint64_t block) : fs_(fs), e_(e), m_(m), block_(block) {}

  std::vector<Violation> dir(uint64_t ino, const std::vector<int>& cands, const std::string& path) {
    std::vector<std::string> listed;
    fuse::DirHandle* dh = nullptr;
    try {
      dh = fs_.opendir(ino);
      fs_.readdir(*dh, 0, [&](const fuse::DirEntry& de, uint64_t) {
        if (de.name != "." && de.name != "..") listed.push_back(de.name);
        return true;
      });
      fs_.releasedir(dh);
    } catch (const std::exception& x) {
      if (dh) fs_.releasedir(dh);
      return {{"EIO", path.empty() ? "/" : path, "listing fails: " + what_of(x)}};
    }
    std::vector<Violation> best;
    bool have = false;
    for (int c : cands) {
      auto v = dir_as(ino, c, listed, path);
      if (!have || v.size() < best.size()) {
        best = std::move(v);
        have = true;
      }
      if (best.empty()) break;
    }
    return best;
  }

 private:
  std::vector<Violation> dir_as(uint64_t ino, int obj, const std::vector<std::string>& listed,
                                const std::string& path) {
    std::vector<Violation> out;
    std::set<std::string> all(listed.begin(), listed.end());
    const std::vector<std::string> had = e_.names(obj);
    all.insert(had.begin(), had.end());
    std::set<std::string> seen;
    for (const auto& n : listed)
      if (!seen.insert(n).second) out.push_back({"UNEXPECTED", path + "/" + n, "listed twice"});
    for (const auto& name : all) {
      const std::string p = path + "/" + name;
      const auto b = e_.binding(obj, name, m_);
      const std::string since =
          b.synced_step >= 0 ? "the directory's fsync at step " + std::to_string(b.synced_step) : "never";
      if (!seen.count(name)) {
        if (!b.may_be_absent)
          out.push_back(
              {"MISSING", p, "not listed, but the name was in its directory at " + since + " and stayed until now"});
        continue;
      }
      if (b.objs.empty()) {
        const bool ever = std::find(had.begin(), had.end(), name) != had.end();
        out.push_back({"UNEXPECTED", p,
                       ever ? "listed, but the name was gone at " + since + " and never came back"
                            : "listed, but the directory never had this name"});
        continue;
      }
      entry(ino, name, p, b.objs, out);
    }
    return out;
  }

  void entry(uint64_t dir_ino, const std::string& name, const std::string& p, const std::vector<int>& objs,
             std::vector<Violation>& out) {
    fuse::Entry en;
    try {
      en = fs_.lookup(dir_ino, name);
    } catch (const std::exception& x) {
      out.push_back({"EIO", p, "lookup fails: " + what_of(x)});
      return;
    }
    if (en.ino == 0) {
      out.push_back({"EIO", p, "listed, but lookup finds nothing"});
      return;
    }
    const mode_t t = en.attr.st_mode & S_IFMT;
    std::vector<int> cands;
    std::string expected;
    for (int o : objs) {
      if (e_.type(o) == t) cands.push_back(o);
      expected += (expected.empty() ? "" : " or ") + kind_of(e_.type(o));
    }
    if (cands.empty()) {
      out.push_back({"TYPE", p, "is a " + kind_of(t) + ", expected a " + expected});
      return;
    }
    if (t == S_IFDIR) {
      auto v = dir(en.ino, cands, p);
      out.insert(out.end(), v.begin(), v.end());
    } else if (t == S_IFLNK) {
      std::string target;
      try {
        target = fs_.readlink(en.ino);
      } catch (const std::exception& x) {
        out.push_back({"EIO", p, "readlink fails: " + what_of(x)});
        return;
      }
      for (int o : cands)
        if (e_.content(o) == target) return;
      out.push_back(
          {"TARGET", p, "points to " + brief(target) + ", not to its target (" + brief(e_.content(cands[0])) + ")"});
    } else if (t == S_IFREG) {
      std::string got;
      try {
        std::vector<uint8_t> buf(1 << 17);
        for (uint64_t off = 0;;) {
          size_t n = fs_.read(en.ino, buf, off);
          got.append(reinterpret_cast<const char*>(buf.data()), n);
          off += n;
          if (n < buf.size()) break;
        }
      } catch (const std::exception& x) {
        out.push_back({"EIO", p, "read fails at byte " + std::to_string(got.size()) + ": " + what_of(x)});
        return;
      }
      std::string why;
      for (int o : cands) {
        const auto v = e_.versions(o, m_);
        if (content_allowed(got, v.contents, block_)) return;
        if (!why.empty()) why += "; or ";
        if (v.exact) {
          why += "its fsync returned at step " + std::to_string(v.synced_step) + ", so it must read exactly " +
                 brief(v.contents.front());
        } else {
          why += "none of";
          for (size_t k = 0; k < v.contents.size(); ++k) why += " (" + v.labels[k] + ": " + brief(v.contents[k]) + ")";
          if (v.synced_step >= 0) why += " [last fsync at step " + std::to_string(v.synced_step) + "]";
        }
      }
      out.push_back({"CONTENT", p, "reads " + brief(got) + ": " + why});
    }
  }

  fuse::Fs& fs_;
  const Expectations& e_;
  int m_;
  uint64_t block_;
};

std::vector<Violation> fsck_violations(const std::string& dir, const SecretBytes& master,
                                       const std::function<std::string()>& fresh_copy) {
  std::vector<Violation> out;
  try {
    auto vol = Volume::open_with_master_key(dir, master);
    fsck::Report first = fsck::Checker(*vol, {}).run();
    if (first.clean()) return out;
    const std::string copy = fresh_copy();
    fsck::Options repair;  // everything fsck can repair: fsck --repair --delete-orphans
    repair.repair = true;
    repair.delete_orphans = true;
    {
      auto v2 = Volume::open_with_master_key(copy, master);
      fsck::Checker(*v2, repair).run();
    }
    auto v3 = Volume::open_with_master_key(copy, master);
    fsck::Report after = fsck::Checker(*v3, {}).run();
    if (after.clean()) return out;
    for (const auto& p : after.problems)
      if (!fsck::is_notice(p.kind))
        out.push_back({"FSCK", p.path, p.detail + " (left by fsck --repair)", std::string(fsck::kind_name(p.kind))});
  } catch (const std::exception& x) {
    out.push_back({"FSCK", "/", "fsck fails: " + what_of(x), "error"});
  }
  return out;
}

}  // namespace

std::vector<Violation> check_state(const std::string& dir, int m, const CheckSetup& setup,
                                   const std::function<std::string()>& fresh_copy) {
  std::vector<Violation> out;
  SecretBytes opened;
  const SecretBytes* key = &setup.master;
  if (setup.open_volume) {
    opened = setup.open_volume(dir, m, out);
    if (opened.empty()) return out;
    key = &opened;
  }
  // fsck first, on the state exactly as the crash left it: the mount's code writes what it derives (a missing
  // directory IV file) while it reads.
  const std::vector<Violation> fsck_found = fsck_violations(dir, *key, fresh_copy);
  std::unique_ptr<Volume> vol;
  try {
    vol = Volume::open_with_master_key(dir, *key);
  } catch (const std::exception& x) {
    out.push_back({"OPEN", "/", "the volume does not open: " + what_of(x)});
    return out;
  }
  {
    StderrCapture quiet;
    try {
      fuse::Fs fs(std::move(vol));
      Walker w(fs, *setup.expect, m, setup.block);
      auto v = w.dir(FUSE_ROOT_ID, {0}, "");
      out.insert(out.end(), v.begin(), v.end());
    } catch (const std::exception& x) {
      out.push_back({"EIO", "/", "walk fails: " + what_of(x)});
    }
    const std::string warnings = quiet.restore();
    if (!out.empty() && !warnings.empty()) {
      std::string w = warnings;
      while (!w.empty() && w.back() == '\n') w.pop_back();
      for (auto& c : w)
        if (c == '\n') c = '|';
      out.back().detail += " {daemon warnings: " + w + "}";
    }
  }
  out.insert(out.end(), fsck_found.begin(), fsck_found.end());
  return out;
}

}  // namespace veil::crash
