#include "fsck/checker.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <memory>
#include <optional>

#include "veilfs/crypto/encoding.hpp"
#include "veilfs/crypto/siv.hpp"
#include "veilfs/layout/cipher_dir.hpp"
#include "veilfs/layout/conflicts.hpp"
#include "veilfs/util/error.hpp"
#include "veilfs/util/io.hpp"

namespace veil::fsck {

namespace {

constexpr size_t kVerifyChunk = size_t{1} << 20;  // plaintext bytes verified per read
constexpr size_t kMaxListedRanges = 8;            // bad-block ranges spelled out in one problem

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

std::string join_plain(const std::string& parent, std::string_view name) {
  return parent == "/" ? "/" + std::string(name) : parent + "/" + std::string(name);
}
std::string join_cipher(const std::string& parent, std::string_view name) {
  return parent == "." ? std::string(name) : parent + "/" + std::string(name);
}

std::string errno_text(int err) { return std::string(std::strerror(err)); }

// Changed within the last day: on a tree a sync service is still filling in, what is missing may yet arrive.
bool recent(const struct stat& st) {
  constexpr time_t kDay = 24 * 60 * 60;
  return ::time(nullptr) - st.st_mtime < kDay;
}

// Whether an undecryptable backing name was meant to be one of ours (a damaged or misplaced encrypted name) or
// is something else entirely (a file a user or a sync service put there).
bool looks_encrypted(std::string_view name) {
  auto raw = base64url_decode(name);
  return raw && raw->size() >= kSivTagSize + format::kNamePadQuantum &&
         (raw->size() - kSivTagSize) % format::kNamePadQuantum == 0;
}

std::string describe_ranges(const std::vector<std::pair<uint64_t, uint64_t>>& ranges, bool more) {
  std::string s;
  for (const auto& [a, b] : ranges) {
    if (!s.empty()) s += ", ";
    s += std::to_string(a);
    if (b != a) s += "-" + std::to_string(b);
  }
  if (more) s += ", ...";
  return s;
}

}  // namespace

std::string_view kind_name(ProblemKind k) {
  switch (k) {
    case ProblemKind::ConfigCorrupt:
      return "config-corrupt";
    case ProblemKind::TempLeftover:
      return "temp-leftover";
    case ProblemKind::DirIvMissing:
      return "dir-iv-missing";
    case ProblemKind::DirIvBad:
      return "dir-iv-bad";
    case ProblemKind::NameUndecryptable:
      return "name-undecryptable";
    case ProblemKind::ForeignEntry:
      return "foreign-entry";
    case ProblemKind::SidecarMissing:
      return "sidecar-missing";
    case ProblemKind::SidecarBad:
      return "sidecar-bad";
    case ProblemKind::SidecarOrphaned:
      return "sidecar-orphaned";
    case ProblemKind::LinkTargetBad:
      return "link-target-bad";
    case ProblemKind::HeaderBad:
      return "header-bad";
    case ProblemKind::Truncated:
      return "truncated";
    case ProblemKind::BlocksBad:
      return "blocks-bad";
    case ProblemKind::XattrBad:
      return "xattr-bad";
    case ProblemKind::XattrForeign:
      return "xattr-foreign";
    case ProblemKind::TooDeep:
      return "too-deep";
    case ProblemKind::IoError:
      return "io-error";
    case ProblemKind::ConflictCopy:
      return "conflict-copy";
    case ProblemKind::DirIvShared:
      return "dir-iv-shared";
    case ProblemKind::SyncServiceFile:
      return "sync-file";
  }
  return "unknown";
}

bool is_notice(ProblemKind k) {
  return k == ProblemKind::ConflictCopy || k == ProblemKind::DirIvShared || k == ProblemKind::SyncServiceFile;
}

std::string Problem::line() const {
  std::string s = std::string(kind_name(kind)) + " " + path + ": " + detail;
  if (repaired)
    s += kind == ProblemKind::ConflictCopy || kind == ProblemKind::SidecarBad ? " [renamed]"
         : kind == ProblemKind::DirIvMissing || kind == ProblemKind::DirIvBad ? " [written]"
         : kind == ProblemKind::Truncated                                     ? " [repaired]"
                                                                              : " [removed]";
  return s;
}

std::vector<std::string> Report::sorted_lines() const {
  std::vector<std::string> out;
  out.reserve(problems.size());
  for (const auto& p : problems) out.push_back(p.line());
  std::sort(out.begin(), out.end());
  return out;
}

// One directory level of the walk: its descriptor, a small getdents buffer (never the whole listing), its IV.
struct Checker::Dir {
  UniqueFd fd;
  std::optional<DirIv> iv;  // nullopt: unknown, names here cannot be checked
  std::string path, cipher_path;
  bool is_root = false;
  unsigned depth = 0;
  std::array<char, 8192> buf{};
  size_t pos = 0, len = 0;
  bool eof = false;
  std::vector<std::string> renamed;  // names our repairs gave entries here: checked already, never twice

  // Next entry (name, d_type), or nullopt at the end. Throws on a getdents error.
  std::optional<std::pair<std::string, unsigned char>> next() {
    for (;;) {
      if (pos >= len) {
        if (eof) return std::nullopt;
        ssize_t n = ::getdents64(fd.get(), buf.data(), buf.size());
        if (n < 0) {
          if (errno == EINTR) continue;
          throw_errno("getdents");
        }
        if (n == 0) {
          eof = true;
          return std::nullopt;
        }
        pos = 0;
        len = static_cast<size_t>(n);
      }
      auto* d = reinterpret_cast<const dirent64*>(buf.data() + pos);
      pos += d->d_reclen;
      std::string name = d->d_name;
      if (name == "." || name == "..") continue;
      if (std::find(renamed.begin(), renamed.end(), name) != renamed.end()) continue;
      return std::make_pair(std::move(name), d->d_type);
    }
  }
};

Checker::Checker(const Volume& volume, Options opt) : vol_(volume), opt_(std::move(opt)) {}

void Checker::add(ProblemKind kind, const std::string& path, const std::string& cipher_path, std::string detail,
                  bool repaired) {
  Problem p{kind, path, cipher_path, std::move(detail), repaired};
  if (held_) {
    held_->push_back(std::move(p));
    return;
  }
  ++(is_notice(kind) ? report_.notice_count : report_.problem_count);
  if (repaired) ++report_.repaired_count;
  if (opt_.on_problem) opt_.on_problem(p);
  if (report_.problems.size() < opt_.max_kept_problems) report_.problems.push_back(std::move(p));
}

bool Checker::derived_iv_is_proven(int dirfd, const DirIv& iv) {
  bool proven = true;
  try {
    for_each_dir_entry(dirfd, [&](std::string_view name) {
      bool undecodable = false;
      layout::shown_name_of(
          dirfd, name, [&](std::string_view e) { return vol_.names().decrypt(iv, e); }, &undecodable);
      proven = !undecodable;
      return proven;
    });
  } catch (const Error&) {
    return false;
  }
  return proven;
}

void Checker::report_linked(Linked& l) {
  std::string names;
  for (const auto& n : l.other_names) names += (names.empty() ? "" : ", ") + n;
  for (auto& p : l.problems)
    add(p.kind, p.path, p.cipher_path, names.empty() ? p.detail : p.detail + " (hard link, also named " + names + ")",
        p.repaired);
  l.problems.clear();
}

void Checker::progress() {
  if (opt_.on_progress) opt_.on_progress(report_.stats);
}

Report Checker::run() {
  report_ = Report{};
  report_.config_ok = true;
  UniqueFd root = layout::open_dir_for_listing(vol_.root_fd());

  std::vector<std::unique_ptr<Dir>> stack;
  auto top = std::make_unique<Dir>();
  top->fd = std::move(root);
  top->path = "/";
  top->cipher_path = ".";
  top->is_root = true;
  top->iv = vol_.root_iv();
  stack.push_back(std::move(top));
  check_dir_entries(stack);
  for (auto& [key, l] : linked_) report_linked(l);  // names outside the walk (or hidden from it) never came
  linked_.clear();
  return std::move(report_);
}

// Opens the directory on top of the stack (IV, xattrs) and walks the whole subtree below it, depth first.
void Checker::check_dir_entries(std::vector<std::unique_ptr<Dir>>& stack) {
  auto enter = [&](Dir& d, const std::optional<DirIv>& fallback) {
    ++report_.stats.dirs;
    try {
      if (auto iv = layout::read_dir_iv(d.fd.get())) {
        d.iv = *iv;
        // The root's IV is derived from the master key, so its file can be verified (a poisoned IV hides every name).
        if (d.is_root && *iv != vol_.root_iv()) {
          add(ProblemKind::DirIvBad, d.path, d.cipher_path,
              "root directory IV file veilfs.diriv does not match the IV derived from the master key (the mount "
              "shows no names under it)");
          d.iv = vol_.root_iv();
        }
        // `mv logs logs.1; mkdir logs` derives the old IV again (docs/SECURITY.md): not damage, but worth knowing.
        auto [first, fresh_iv] = ivs_seen_.try_emplace(std::string(iv->begin(), iv->end()), d.path);
        if (!fresh_iv)
          add(ProblemKind::DirIvShared, d.path, d.cipher_path,
              "has the same IV as " + first->second +
                  " (a directory re-created under a name another one was renamed away from): a name present in "
                  "both looks alike on disk");
      } else {
        struct stat dst {};
        const bool fresh = ::fstat(d.fd.get(), &dst) == 0 && recent(dst);
        std::string detail = "directory IV file veilfs.diriv is missing (the mount derives it)";
        if (fresh) detail += "; the directory changed within the last day: perhaps its IV file is still being synced";
        // The derived IV is proven when every name in the directory decrypts under it (an empty directory: any
        // IV is as good). Only then may --repair write it down.
        bool repaired = false;
        if (fallback && derived_iv_is_proven(d.fd.get(), *fallback)) {
          if (opt_.repair) {
            try {
              layout::write_dir_iv(d.fd.get(), *fallback);
              repaired = true;
            } catch (const Error&) {
            }
          }
          detail += repaired ? "; every name decrypts under the derived IV"
                             : "; every name decrypts under the derived IV (--repair writes it)";
        }
        add(ProblemKind::DirIvMissing, d.path, d.cipher_path, detail, repaired);
        d.iv = fallback;
      }
    } catch (const Error& e) {
      std::string why =
          e.kind() == ErrorKind::Io ? "cannot be read: " + errno_text(e.sys_errno()) : "is not a 16-byte regular file";
      // Torn by a crash (mkdir writes it in place): like a missing one, replaced when the names prove the IV.
      bool repaired = false;
      if (e.kind() == ErrorKind::Corrupt && fallback && derived_iv_is_proven(d.fd.get(), *fallback)) {
        why += "; every name decrypts under the derived IV";
        struct stat ivst {};
        const bool regular =
            ::fstatat(d.fd.get(), "veilfs.diriv", &ivst, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(ivst.st_mode);
        if (opt_.repair && regular) {
          try {
            layout::write_dir_iv(d.fd.get(), *fallback);
            repaired = true;
          } catch (const Error&) {
          }
        } else if (regular) {
          why += " (--repair writes it)";
        }
      }
      add(ProblemKind::DirIvBad, d.path, d.cipher_path, "directory IV file veilfs.diriv " + why, repaired);
      d.iv = fallback;
    }
    check_xattrs(d.fd.get(), d.path, d.cipher_path);
    progress();
  };
  {
    Dir& root = *stack.back();
    std::optional<DirIv> fallback = root.iv;
    enter(root, fallback);
  }

  while (!stack.empty()) {
    Dir& d = *stack.back();
    std::optional<std::pair<std::string, unsigned char>> e;
    try {
      e = d.next();
    } catch (const Error& err) {
      add(ProblemKind::IoError, d.path, d.cipher_path, "listing failed: " + errno_text(err.sys_errno()));
    }
    if (!e) {
      stack.pop_back();
      continue;
    }
    size_t before = stack.size();
    check_entry(stack, d, e->first);
    if (stack.size() > before) {
      Dir& child = *stack.back();
      std::optional<DirIv> fallback = child.iv;
      enter(child, fallback);
    }
  }
}

void Checker::check_entry(std::vector<std::unique_ptr<Dir>>& stack, Dir& dir, const std::string& name) {
  const int dfd = dir.fd.get();
  const std::string rpath = join_plain(dir.path, name);  // path with this component as its backing name
  const std::string cpath = join_cipher(dir.cipher_path, name);
  struct stat st {};
  if (::fstatat(dfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return;  // removed while we walked (or by our own repair)
    add(ProblemKind::IoError, rpath, cpath, "stat failed: " + errno_text(errno));
    return;
  }

  auto exists = [&](const std::string& n, mode_t* mode = nullptr) {
    struct stat s {};
    if (::fstatat(dfd, n.c_str(), &s, AT_SYMLINK_NOFOLLOW) != 0) return false;
    if (mode) *mode = s.st_mode;
    return true;
  };
  auto remove_reserved = [&](ProblemKind kind, std::string detail) {
    bool removed = false;
    if (opt_.repair && ::unlinkat(dfd, name.c_str(), 0) == 0) {
      removed = true;
      if (opt_.on_repair) opt_.on_repair(cpath);
    }
    add(kind, rpath, cpath, std::move(detail), removed);
  };
  // A sidecar without its entry: on a tree a sync service is still filling in, the entry may yet arrive.
  auto orphan = [&](std::string detail) {
    if (recent(st)) detail += " (changed within the last day: perhaps its entry is still being synced)";
    if (opt_.repair && !opt_.delete_orphans) {
      add(ProblemKind::SidecarOrphaned, rpath, cpath, detail + "; kept (--delete-orphans removes it)");
      return;
    }
    remove_reserved(ProblemKind::SidecarOrphaned, std::move(detail));
  };
  // A sync service's conflict copy: a notice, and the entry is checked under the name the mount shows.
  std::string path = rpath;
  std::string renamed_to;  // a conflict copy given an ordinary name: the rest is checked under it
  auto conflict_copy = [&]() -> bool {
    if (!dir.iv) return false;
    bool conflict = false;
    auto shown = layout::shown_name_of(
        dfd, name, [&](std::string_view e) { return vol_.names().decrypt(*dir.iv, e); }, nullptr, &conflict);
    if (!shown || !conflict) return false;
    path = join_plain(dir.path, *shown);
    bool renamed = false;
    if (opt_.repair && opt_.rename_conflicts && S_ISREG(st.st_mode)) {
      const std::string encoded = vol_.names().encrypt(*dir.iv, *shown);
      const std::string target = layout::backing_name(encoded);
      if (!exists(target)) {
        layout::EntryUndo undo;
        layout::add_name_sidecar(undo, dfd, target, encoded, /*must_be_new=*/true);
        if (::renameat(dfd, name.c_str(), dfd, target.c_str()) == 0) {
          undo.dismiss();
          renamed = true;  // its line says so ("[renamed]"); on_repair reports removals only
          dir.renamed.push_back(target);
          renamed_to = target;
        }
      }
    }
    add(ProblemKind::ConflictCopy, path, cpath,
        renamed ? "a sync service's conflict copy, now under an ordinary name (this one)"
                : "a sync service's conflict copy (shown under this name by the mount): compare it with the original, "
                  "then rename or delete it",
        renamed);
    return true;
  };

  // An entry whose long name is unreadable (an empty or damaged sidecar: what a power cut could leave before
  // sidecars were synced): the name is lost, the contents are not (a file's blocks and a directory with its IV
  // file do not depend on the name). --repair gives it a name of its own, and it is checked under that name.
  auto save_nameless = [&](const std::string& why) {
    const bool has_iv = S_ISDIR(st.st_mode) && exists(name + "/" + std::string(format::kDirIvName));
    if (!dir.iv || !(S_ISREG(st.st_mode) || has_iv)) {
      add(ProblemKind::SidecarBad, rpath, cpath, why + "; the name is lost");
      return;
    }
    const std::string plain = "veilfs-lost-name-" + name.substr(name.size() - 12);
    const std::string encoded = vol_.names().encrypt(*dir.iv, plain);
    const std::string target = layout::backing_name(encoded);
    bool saved = false;
    if (opt_.repair && !exists(target)) {
      layout::EntryUndo undo;
      layout::add_name_sidecar(undo, dfd, target, encoded, /*must_be_new=*/true);
      if (::renameat(dfd, name.c_str(), dfd, target.c_str()) == 0) {
        undo.dismiss();
        saved = true;
        ::unlinkat(dfd, layout::name_sidecar_of(name).c_str(), 0);  // the damaged sidecar
        ::fsync(dfd);
        dir.renamed.push_back(target);
        renamed_to = target;
      }
    }
    add(ProblemKind::SidecarBad, rpath, cpath,
        why + "; the name is lost, not the " + (S_ISDIR(st.st_mode) ? "directory" : "contents") + ": " +
            (saved ? "now " : "--repair names it ") + join_plain(dir.path, plain),
        saved);
  };

  // --- reserved names: veilfs's own files never appear in the plain view ---
  std::string encoded;
  bool long_name = false;
  const layout::Reserved reserved = layout::classify(name);
  switch (reserved) {
    case layout::Reserved::None:
      encoded = name;
      break;
    case layout::Reserved::DirIv:
      return;  // checked on entering the directory
    case layout::Reserved::Config:
    case layout::Reserved::Params:  // checked against the config when the volume is opened (check_volume)
      if (dir.is_root) return;
      add(ProblemKind::ForeignEntry, rpath, cpath, "reserved name that veilfs does not use here (hidden by the mount)");
      return;
    case layout::Reserved::Unknown:
      if (conflict_copy()) break;  // of a long name
      add(ProblemKind::ForeignEntry, rpath, cpath, "reserved name that veilfs does not use here (hidden by the mount)");
      return;
    case layout::Reserved::Temp:
      if (!S_ISREG(st.st_mode)) {
        add(ProblemKind::ForeignEntry, rpath, cpath, "reserved temporary name on something not a regular file");
        return;
      }
      remove_reserved(ProblemKind::TempLeftover, "temporary file left by an interrupted atomic write");
      return;
    case layout::Reserved::NameSidecar: {
      std::string owner = layout::sidecar_owner(name, reserved);
      if (!exists(owner)) orphan("long-name sidecar without its entry " + owner);
      return;  // otherwise checked together with its owner
    }
    case layout::Reserved::LinkSidecar: {
      std::string owner = layout::sidecar_owner(name, reserved);
      mode_t mode = 0;
      bool owner_ok = exists(owner, &mode) && S_ISLNK(mode);
      if (owner_ok) {
        try {
          owner_ok = layout::is_long_link_marker(layout::read_symlink(dfd, owner.c_str()));
        } catch (const Error&) {
          owner_ok = false;
        }
      }
      if (!owner_ok) orphan("long symlink target sidecar without a symlink that uses it");
      return;
    }
    case layout::Reserved::LongName:
      // veilfs.longname.<hash>: the full encoded name lives in the sidecar, which must hash to this name.
      long_name = true;
      try {
        encoded = layout::read_long_name(dfd, name);
      } catch (const Error& e) {
        // A missing sidecar may still be on its way (a sync service fetches files in any order): reported only.
        if (e.kind() == ErrorKind::Io && e.sys_errno() == ENOENT)
          add(ProblemKind::SidecarMissing, rpath, cpath, "long name without its sidecar (invisible in the mount)");
        else
          save_nameless(e.kind() == ErrorKind::Io ? "sidecar cannot be read: " + errno_text(e.sys_errno()) : e.what());
      }
      break;
  }

  // --- the name itself ---
  if (!encoded.empty() && dir.iv && path == rpath) {
    if (auto plain = vol_.names().decrypt(*dir.iv, encoded)) {
      path = join_plain(dir.path, *plain);
    } else if (conflict_copy()) {
    } else if (long_name || looks_encrypted(encoded)) {
      add(ProblemKind::NameUndecryptable, rpath, cpath,
          "name does not decrypt in this directory (tampered, or moved from another directory)");
    } else {
      // Not ours: a stray file in the cipher dir. Reported, never opened: it is not encrypted data.
      if (layout::is_sync_service_file(name))
        add(ProblemKind::SyncServiceFile, rpath, cpath, "a sync tool's own file (hidden by the mount)");
      else
        add(ProblemKind::ForeignEntry, rpath, cpath, "not an encrypted name (hidden by the mount)");
      return;
    }
  }

  if (!renamed_to.empty()) {
    check_entry(stack, dir, renamed_to);
    return;
  }
  ++report_.stats.entries;
  // --- what it is ---
  if (S_ISDIR(st.st_mode)) {
    if (dir.depth + 1 >= opt_.max_depth) {
      add(ProblemKind::TooDeep, path, cpath,
          "directory nesting deeper than " + std::to_string(opt_.max_depth) + " levels: not descended");
      return;
    }
    UniqueFd fd;
    try {
      fd = layout::open_dir(dfd, name, O_RDONLY);
    } catch (const Error& e) {
      add(ProblemKind::IoError, path, cpath, "cannot open directory: " + errno_text(e.sys_errno()));
      return;
    }
    auto child = std::make_unique<Dir>();
    child->fd = std::move(fd);
    child->path = path;
    child->cipher_path = cpath;
    child->depth = dir.depth + 1;
    // The IV the mount would use if the IV file is missing: derived from the parent's and the encoded name.
    if (dir.iv && !encoded.empty()) child->iv = vol_.names().derive_child_iv(*dir.iv, encoded);
    stack.push_back(std::move(child));
  } else if (S_ISREG(st.st_mode)) {
    Linked* linked = nullptr;
    if (st.st_nlink > 1) {
      const std::pair<uint64_t, uint64_t> key{st.st_dev, st.st_ino};
      if (auto it = linked_.find(key); it != linked_.end()) {
        it->second.other_names.push_back(path);  // another name of a file already checked
        if (--it->second.names_left == 0) {
          report_linked(it->second);
          linked_.erase(it);
        }
        progress();
        return;
      }
      linked = &linked_[key];
      linked->names_left = st.st_nlink - 1;
    }
    ++report_.stats.files;
    struct Hold {
      std::vector<Problem>*& held;
      ~Hold() { held = nullptr; }
    } hold{held_};
    if (linked) held_ = &linked->problems;
    // Read-write only for --repair (re-sealing a file's end); a file we may not write is checked read-only.
    UniqueFd fd;
    if (opt_.repair) fd.reset(::openat(dfd, name.c_str(), O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (!fd) fd.reset(::openat(dfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (!fd) {
      add(ProblemKind::IoError, path, cpath, "cannot open: " + errno_text(errno));
      return;
    }
    check_xattrs(fd.get(), path, cpath);
    check_file(std::move(fd), path, cpath);
  } else if (S_ISLNK(st.st_mode)) {
    ++report_.stats.symlinks;
    check_symlink(dir, name, path, cpath);
  } else {
    ++report_.stats.others;  // FIFOs, sockets, device nodes: nothing encrypted besides the name
  }
  progress();
}

void Checker::check_symlink(Dir& dir, const std::string& name, const std::string& path, const std::string& cpath) {
  // Never followed: a backing symlink's target is ciphertext, and a hostile one may loop.
  std::string stored;
  try {
    stored = layout::read_symlink(dir.fd.get(), name.c_str());
  } catch (const Error& e) {
    add(ProblemKind::IoError, path, cpath, "readlink failed: " + errno_text(e.sys_errno()));
    return;
  }
  try {
    stored = layout::link_target_from(std::move(stored), dir.fd.get(), name);
  } catch (const Error& e) {
    add(ProblemKind::LinkTargetBad, path, cpath,
        e.kind() != ErrorKind::Io ? std::string(e.what())
        : e.sys_errno() == ENOENT ? "long target sidecar is missing"
                                  : "long target sidecar cannot be read: " + errno_text(e.sys_errno()));
    return;
  }
  if (!vol_.links().decrypt(stored))
    add(ProblemKind::LinkTargetBad, path, cpath, "symlink target does not decrypt (tampered or foreign)");
}

void Checker::check_xattrs(int fd, const std::string& path, const std::string& cpath) {
  ssize_t n = ::flistxattr(fd, nullptr, 0);
  if (n < 0) {
    if (errno != ENOTSUP) add(ProblemKind::IoError, path, cpath, "listxattr failed: " + errno_text(errno));
    return;
  }
  if (n == 0) return;
  std::vector<char> list(static_cast<size_t>(n));
  n = ::flistxattr(fd, list.data(), list.size());
  if (n < 0) {
    add(ProblemKind::IoError, path, cpath, "listxattr failed: " + errno_text(errno));
    return;
  }
  std::vector<uint8_t> value;
  for (size_t pos = 0; pos < static_cast<size_t>(n);) {
    std::string backing(list.data() + pos);
    pos += backing.size() + 1;
    if (!starts_with(backing, format::kXattrUserPrefix)) continue;  // security.*, system.*: not ours
    if (!starts_with(backing, format::kXattrBackingPrefix)) {
      add(ProblemKind::XattrForeign, path, cpath, "attribute " + backing + " was not written by veilfs");
      continue;
    }
    auto plain = vol_.xattrs().decrypt_name(backing);
    if (!plain) {
      add(ProblemKind::XattrBad, path, cpath, "attribute name " + backing + " does not decrypt");
      continue;
    }
    ssize_t vlen = ::fgetxattr(fd, backing.c_str(), nullptr, 0);
    if (vlen >= 0) {
      value.resize(static_cast<size_t>(vlen));
      vlen = ::fgetxattr(fd, backing.c_str(), value.data(), value.size());
    }
    if (vlen < 0) {
      add(ProblemKind::IoError, path, cpath, "getxattr " + *plain + " failed: " + errno_text(errno));
      continue;
    }
    value.resize(static_cast<size_t>(vlen));
    if (!vol_.xattrs().decrypt_value(backing, value))
      add(ProblemKind::XattrBad, path, cpath, "value of attribute " + *plain + " does not decrypt");
  }
}

void Checker::check_file(UniqueFd fd, const std::string& path, const std::string& cpath) {
  try {
    // The content engine verifies its own blocks (read-only, in bounded chunks, holes skipped); this maps what it
    // found to problems.
    ContentFile cf(vol_.content(), std::move(fd), cpath);
    VerifyOptions vo;
    vo.chunk_bytes = kVerifyChunk;
    vo.max_ranges = kMaxListedRanges;
    vo.on_progress = [&](uint64_t bytes) {
      report_.stats.bytes += bytes;
      progress();
    };
    const VerifyResult r = cf.verify(vo);
    switch (r.header) {
      case VerifyResult::Header::Ok:
        break;
      case VerifyResult::Header::Short:
        add(ProblemKind::HeaderBad, path, cpath,
            "file header is truncated (" + std::to_string(r.backing_size) + " bytes)");
        return;
      case VerifyResult::Header::Unreadable:
        add(ProblemKind::HeaderBad, path, cpath, "file header is truncated");
        return;
      case VerifyResult::Header::Invalid:
        add(ProblemKind::HeaderBad, path, cpath, r.header_error);
        return;
    }
    if (r.header_only()) {
      // What a cut-short first write or shrinking truncate leaves (docs/FORMAT.md 6.5); it reads as empty.
      const bool repaired = opt_.repair && cf.drop_empty_header();
      add(ProblemKind::Truncated, path, cpath,
          std::string("file has a header but no blocks: it reads as empty (a write or truncate was cut short)") +
              (repaired ? "" : "; --repair makes it an empty file"),
          repaired);
      return;
    }
    const uint64_t nb = r.blocks;
    if (r.last_slot_too_short) {
      // Too short to hold even one byte: the engine can read nothing up to it, so it is reported alone.
      add(ProblemKind::BlocksBad, path, cpath,
          "last block " + std::to_string(nb - 1) + " is " + std::to_string(r.last_slot_size) +
              " bytes, too short to hold data (cut or corrupt)");
      return;
    }
    if (r.cut_at_block_boundary) {
      // Every block authenticates; only the marker of the end is missing. Re-sealing it keeps all there is.
      const bool repaired = opt_.repair && cf.reseal_end();
      add(ProblemKind::Truncated, path, cpath,
          "file ends at a block boundary without the final-block marker: data after block " + std::to_string(nb - 1) +
              " is missing; every block before authenticates" +
              (repaired ? "" : " (--repair re-seals block " + std::to_string(nb - 1) + " as the last)"),
          repaired);
      return;
    }
    if (r.bad_blocks == 0) return;
    add(ProblemKind::BlocksBad, path, cpath,
        std::to_string(r.bad_blocks) + " of " + std::to_string(nb) + " blocks fail authentication (block" +
            (r.bad_blocks == 1 ? " " : "s ") + describe_ranges(r.bad_ranges, r.more_ranges) + ")");
  } catch (const Error& e) {
    add(ProblemKind::IoError, path, cpath,
        e.kind() == ErrorKind::Io ? "read failed: " + errno_text(e.sys_errno()) : e.what());
  }
}

Report check_volume(const std::string& cipherdir, std::span<const uint8_t> secret, const Options& opt) {
  std::unique_ptr<Volume> vol;
  try {
    vol = Volume::open(cipherdir, secret, opt.config_file);
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::Corrupt && e.kind() != ErrorKind::Auth) throw;
    Report r;
    Problem p{ProblemKind::ConfigCorrupt, "/",
              opt.config_file.empty() ? std::string(format::kConfigName) : opt.config_file, e.what()};
    if (opt.on_problem) opt.on_problem(p);
    r.problems.push_back(std::move(p));
    r.problem_count = 1;
    return r;
  }
  Checker c(*vol, opt);
  return c.run();
}

}  // namespace veil::fsck
