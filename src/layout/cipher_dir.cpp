#include "veilfs/layout/cipher_dir.hpp"

#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "veilfs/crypto/encoding.hpp"
#include "veilfs/crypto/kdf.hpp"
#include "veilfs/crypto/random.hpp"
#include "veilfs/layout/conflicts.hpp"
#include "veilfs/util/error.hpp"
#include "veilfs/util/io.hpp"

namespace veil::layout {

using namespace format;

namespace {

// One of veilfs's own small files, or nullopt when there is none (any other failure throws, as read_small_file).
std::optional<std::vector<uint8_t>> read_if_present(int dirfd, std::string_view name, size_t max_size) {
  try {
    return read_small_file(dirfd, std::string(name), max_size);
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::Io && e.sys_errno() == ENOENT) return std::nullopt;
    throw;
  }
}

constexpr std::string_view kTempInfix = ".tmp.";  // + kTempHexDigits lowercase hex digits
constexpr size_t kTempHexDigits = 16;
constexpr size_t kLongNameHashChars = 43;  // base64url of 32 bytes, unpadded

std::span<const uint8_t> bytes_of(std::string_view s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }
bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }
std::string str(std::string_view s) { return std::string(s); }

// A small file that must not exist yet, written in place. No fsync: see the callers.
void write_new_file(int dirfd, const std::string& name, std::span<const uint8_t> data, mode_t mode) {
  UniqueFd fd(::openat(dirfd, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode));
  if (!fd) throw_errno("create " + name);
  try {
    pwrite_full(fd.get(), data, 0);
  } catch (...) {
    ::unlinkat(dirfd, name.c_str(), 0);
    throw;
  }
}

// Not fsynced: until the directory is renamed, a lost IV file is derived again, identically (persist_dir_iv
// forces it to disk before a rename).
void create_dir_iv(int dirfd, const DirIv& iv) { write_new_file(dirfd, str(kDirIvName), iv, 0444); }

// Runs step() on directory `backing` in parentfd; for a non-root daemon meeting a directory without owner
// write/search permission, with owner rwx added for the step only.
template <class F>
void with_dir_opened_up(int parentfd, std::string_view backing, Access a, F&& step) {
  UniqueFd d = open_dir(parentfd, backing);
  struct stat st;
  if (::fstat(d.get(), &st) != 0) throw_errno("stat " + str(backing));
  if (a.as_root || (st.st_mode & S_IRWXU) == S_IRWXU) {
    step(d.get());
    return;
  }
  const std::string name(backing);
  if (::fchmodat(parentfd, name.c_str(), (st.st_mode & 07777) | S_IRWXU, 0) != 0) throw_errno("chmod " + name);
  try {
    step(d.get());
  } catch (...) {
    ::fchmodat(parentfd, name.c_str(), st.st_mode & 07777, 0);
    throw;
  }
  if (::fchmodat(parentfd, name.c_str(), st.st_mode & 07777, 0) != 0) throw_errno("chmod " + name);
}

}  // namespace

// --- backing names -----------------------------------------------------------------------------------------

bool needs_long_name(std::string_view encoded) { return encoded.size() > kMaxBackingNameSize; }

std::string long_name_for(std::string_view encoded) {
  std::array<uint8_t, 32> h{};
  blake2b(h, {bytes_of(encoded)});
  return str(kLongNamePrefix) + base64url_encode(h);
}

std::string backing_name(std::string_view encoded) {
  return needs_long_name(encoded) ? long_name_for(encoded) : str(encoded);
}

std::string name_sidecar_of(std::string_view long_name) { return str(long_name) + str(kLongNameSuffix); }

std::string link_sidecar_of(std::string_view backing) {
  std::string n = str(kLongLinkPrefix) + str(backing);
  // Valid backing names leave room for the prefix (FORMAT.md §10); should one not, name the sidecar by its hash.
  if (n.size() > kMaxBackingNameSize) n = str(kLongLinkPrefix) + long_name_for(backing);
  return n;
}

bool is_long_name(std::string_view b) {
  return b.size() == kLongNamePrefix.size() + kLongNameHashChars && starts_with(b, kLongNamePrefix) &&
         b.find('.', kLongNamePrefix.size()) == std::string_view::npos;
}

bool is_reserved(std::string_view b) { return starts_with(b, kReservedPrefix); }

bool is_long_link_marker(std::string_view stored) { return stored == kLongLinkMarker; }

Reserved classify(std::string_view b) {
  if (!is_reserved(b)) return Reserved::None;
  if (b == kConfigName) return Reserved::Config;
  if (b == kParamsName) return Reserved::Params;
  if (b == kDirIvName) return Reserved::DirIv;
  if (is_temp_file(b)) return Reserved::Temp;
  if (is_long_name(b)) return Reserved::LongName;
  if (b.size() > kLongNameSuffix.size() && b.ends_with(kLongNameSuffix) &&
      is_long_name(b.substr(0, b.size() - kLongNameSuffix.size())))
    return Reserved::NameSidecar;
  if (starts_with(b, kLongLinkPrefix) && b.size() > kLongLinkPrefix.size()) return Reserved::LinkSidecar;
  return Reserved::Unknown;
}

std::string sidecar_owner(std::string_view sidecar, Reserved kind) {
  if (kind == Reserved::NameSidecar) return str(sidecar.substr(0, sidecar.size() - kLongNameSuffix.size()));
  if (kind == Reserved::LinkSidecar) return str(sidecar.substr(kLongLinkPrefix.size()));
  return {};
}

// --- reading -----------------------------------------------------------------------------------------------

std::string read_long_name(int dirfd, std::string_view long_name) {
  const std::string side = name_sidecar_of(long_name);
  // Judged by lstat first: a symlink is not followed, and a hostile sidecar may be gigabytes (sparse): never read.
  struct stat st;
  if (::fstatat(dirfd, side.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) throw_errno("stat name sidecar");
  if (!S_ISREG(st.st_mode)) throw_corrupt("sidecar is not a regular file");
  if (static_cast<uint64_t>(st.st_size) > kMaxSidecarSize)
    throw_corrupt("sidecar is " + std::to_string(st.st_size) + " bytes, more than " + std::to_string(kMaxSidecarSize) +
                  " (not read)");
  auto bytes = read_small_file(dirfd, side, kMaxSidecarSize);
  std::string encoded(bytes.begin(), bytes.end());
  if (long_name_for(encoded) != long_name) throw_corrupt("sidecar does not match its hashed short name");
  if (!needs_long_name(encoded)) throw_corrupt("sidecar holds a name short enough to be stored directly");
  return encoded;
}

std::string encoded_name_of(int dirfd, std::string_view backing) {
  return is_long_name(backing) ? read_long_name(dirfd, backing) : str(backing);
}

std::string read_symlink(int dirfd, const char* name) {
  char buf[PATH_MAX + 1];
  ssize_t n = ::readlinkat(dirfd, name, buf, sizeof buf);
  if (n < 0) throw_errno("readlink");
  return std::string(buf, static_cast<size_t>(n));
}

std::string link_target_from(std::string inline_target, int dirfd, std::string_view backing) {
  if (!is_long_link_marker(inline_target)) return inline_target;
  std::vector<uint8_t> side;
  try {
    // LinkCodec refuses anything longer, so a longer sidecar is hostile: read no further.
    side = read_small_file(dirfd, link_sidecar_of(backing), kMaxStoredLinkSize);
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::Corrupt) throw;
    throw_corrupt("long target sidecar is larger than " + std::to_string(kMaxStoredLinkSize) +
                  " bytes or not a regular file");
  }
  return std::string(side.begin(), side.end());
}

std::string read_link_target(int dirfd, std::string_view backing) {
  return link_target_from(read_symlink(dirfd, str(backing).c_str()), dirfd, backing);
}

// --- directory IV files ------------------------------------------------------------------------------------

std::optional<DirIv> read_dir_iv(int dirfd) {
  auto read = read_if_present(dirfd, kDirIvName, kDirIvSize);
  if (!read) return std::nullopt;
  const std::vector<uint8_t>& bytes = *read;
  if (bytes.size() != kDirIvSize) throw_corrupt("directory IV file has the wrong size");
  DirIv iv{};
  std::copy(bytes.begin(), bytes.end(), iv.begin());
  return iv;
}

std::optional<DirIv> read_dir_iv_if_intact(int dirfd, bool* torn) {
  if (torn) *torn = false;
  try {
    return read_dir_iv(dirfd);
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::Corrupt) throw;
    if (torn) *torn = true;
    return std::nullopt;
  }
}

void write_dir_iv(int dirfd, const DirIv& iv) { replace_file(dirfd, kDirIvName, iv, 0444); }

UniqueFd open_dir(int parentfd, std::string_view backing, int flags) {
  UniqueFd d(::openat(parentfd, str(backing).c_str(), flags | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!d) throw_errno("open directory " + str(backing));
  return d;
}

UniqueFd open_dir_for_listing(int dirfd) { return open_dir(dirfd, ".", O_RDONLY); }

std::optional<DirIv> strip_dir_iv(int parentfd, std::string_view backing, Access a) {
  UniqueFd d = open_dir(parentfd, backing);
  std::optional<DirIv> iv = read_dir_iv_if_intact(d.get());
  const std::string ivname(kDirIvName);
  if (::unlinkat(d.get(), ivname.c_str(), 0) == 0 || errno == ENOENT) return iv;
  if (errno != EACCES || a.as_root) throw_errno("remove directory IV file");
  with_dir_opened_up(parentfd, backing, a, [&](int dfd) {
    if (::unlinkat(dfd, ivname.c_str(), 0) != 0 && errno != ENOENT) throw_errno("remove directory IV file");
  });
  return iv;
}

void strip_iv_of_empty_dir(EntryUndo& undo, int parentfd, std::string_view dir, Access a) {
  bool only = true;
  try {
    only = holds_only_dir_iv(parentfd, dir);
  } catch (const Error& e) {
    // A directory its owner may not read (mode 0300): the backing rmdir decides, and the undo restores.
    if (e.sys_errno() != EACCES) throw;
  }
  if (!only) throw Error(ErrorKind::Io, ENOTEMPTY, "directory not empty");
  if (auto stored = strip_dir_iv(parentfd, dir, a)) undo.stripped_dir_iv(parentfd, str(dir), *stored, a);
}

void restore_dir_iv(int parentfd, std::string_view backing, const DirIv& iv, Access a) {
  // Atomic and fsynced: the directory was not empty after all, and its entries need this IV.
  with_dir_opened_up(parentfd, backing, a, [&](int dfd) { write_dir_iv(dfd, iv); });
}

bool holds_only_dir_iv(int parentfd, std::string_view backing) {
  UniqueFd d = open_dir(parentfd, backing, O_RDONLY);
  bool only = true;
  for_each_dir_entry(d.get(), [&](std::string_view name) {
    if (name == "." || name == ".." || name == kDirIvName) return true;
    only = false;
    return false;
  });
  return only;
}

void persist_dir_iv(int parentfd, std::string_view backing, const std::function<DirIv()>& iv_if_missing, Access a) {
  UniqueFd d = open_dir(parentfd, backing);
  if (!read_dir_iv_if_intact(d.get())) {
    DirIv iv = iv_if_missing();
    ::unlinkat(d.get(), str(kDirIvName).c_str(), 0);  // a torn one
    restore_dir_iv(parentfd, backing, iv, a);
  }
  // mkdir writes the IV file without fsync: until the directory is renamed, a lost IV file is derived again,
  // identically. After a rename it would not be, so the IV file must be on disk before the rename is.
  UniqueFd iv_fd(::openat(d.get(), str(kDirIvName).c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!iv_fd || ::fdatasync(iv_fd.get()) != 0) throw Error(ErrorKind::Io, EIO, "directory IV file not on disk");
  UniqueFd dir_fd(::openat(parentfd, str(backing).c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (dir_fd) ::fsync(dir_fd.get());  // best effort: a directory without read permission cannot be opened
}

// --- making and removing side files ------------------------------------------------------------------------

EntryUndo::EntryUndo(std::function<void(const std::string&)> on_failure) : on_failure_(std::move(on_failure)) {}

EntryUndo::~EntryUndo() {
  for (auto it = steps_.rbegin(); it != steps_.rend(); ++it) {
    bool ok = true;
    switch (it->kind) {
      case Kind::File:
        ok = ::unlinkat(it->dirfd, it->name.c_str(), 0) == 0 || errno == ENOENT;
        break;
      case Kind::Dir:
        // Fails harmlessly (ENOTEMPTY) once something went in, e.g. the IV file: then the caller's next step
        // was recorded too and runs first.
        ok = ::unlinkat(it->dirfd, it->name.c_str(), AT_REMOVEDIR) == 0 || errno == ENOENT;
        break;
      case Kind::Renamed:
        ok = ::renameat(it->dirfd, it->to.c_str(), it->dirfd, it->name.c_str()) == 0;
        break;
      case Kind::DirIv:
        try {
          restore_dir_iv(it->dirfd, it->name, it->iv, it->access);
        } catch (const std::exception&) {
          ok = false;
        }
        break;
    }
    if (!ok && on_failure_) {
      try {
        on_failure_(it->name);
      } catch (...) {  // a destructor must not throw
      }
    }
  }
}

void EntryUndo::created_file(int dirfd, std::string name) {
  steps_.push_back({Kind::File, dirfd, std::move(name), {}, {}, {}});
}
void EntryUndo::created_dir(int dirfd, std::string name) {
  steps_.push_back({Kind::Dir, dirfd, std::move(name), {}, {}, {}});
}
void EntryUndo::renamed(int dirfd, std::string from, std::string to) {
  steps_.push_back({Kind::Renamed, dirfd, std::move(from), {}, {}, std::move(to)});
}
void EntryUndo::stripped_dir_iv(int parentfd, std::string dir, const DirIv& iv, Access a) {
  steps_.push_back({Kind::DirIv, parentfd, std::move(dir), iv, a, {}});
}

void add_name_sidecar(EntryUndo& undo, int dirfd, std::string_view backing, std::string_view encoded,
                      bool must_be_new) {
  if (!is_long_name(backing)) return;
  const std::string side = name_sidecar_of(backing);
  UniqueFd fd(::openat(dirfd, side.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0444));
  if (!fd) {
    if (errno != EEXIST) throw_errno("create name sidecar");
    if (must_be_new) {
      // A sidecar without its entry is left over from a crash; with its entry the name exists.
      struct stat st;
      if (::fstatat(dirfd, str(backing).c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0)
        throw Error(ErrorKind::Io, EEXIST, "entry exists");
    }
    return;
  }
  undo.created_file(dirfd, side);
  pwrite_full(fd.get(), bytes_of(encoded), 0);
  // On disk, name and contents, before the entry it names: a crash must not leave the entry with an empty or
  // missing sidecar (a lost name). Two syncs, but only for long names.
  if (::fdatasync(fd.get()) != 0) throw_errno("fsync name sidecar");
  fsync_dir(dirfd);
}

bool link_target_is_long(std::string_view stored) { return stored.size() > kMaxInlineLinkSize; }

std::string add_link_target(EntryUndo& undo, int dirfd, std::string_view backing, const std::string& stored) {
  if (!link_target_is_long(stored)) return stored;
  const std::string side = link_sidecar_of(backing);
  ::unlinkat(dirfd, side.c_str(), 0);  // an orphan from a crash
  write_new_file(dirfd, side, bytes_of(stored), 0444);
  undo.created_file(dirfd, side);
  // On disk before the symlink that points at it: a crash must not leave the symlink with an empty target.
  UniqueFd fd(::openat(dirfd, side.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd || ::fdatasync(fd.get()) != 0) throw_errno("fsync link sidecar");
  fsync_dir(dirfd);
  return str(kLongLinkMarker);
}

void add_dir_iv(EntryUndo& undo, int parentfd, std::string_view dir, const DirIv& iv) {
  UniqueFd d = open_dir(parentfd, dir);
  create_dir_iv(d.get(), iv);
  // Through the parent: the undo may run after d is closed.
  undo.created_file(parentfd, str(dir) + "/" + str(kDirIvName));
}

bool has_conflict_copies(int dirfd, std::string_view backing) {
  bool found = false;
  for_each_dir_entry(dirfd, [&](std::string_view name) {
    auto copy = parse_conflict_backing(name);
    found = copy && copy->original == backing;
    return !found;
  });
  return found;
}

void remove_name_sidecar(int dirfd, std::string_view backing) {
  if (!is_long_name(backing)) return;
  // The entry's removal (or rename away) on disk first: a crash must not leave the entry without its name.
  try {
    fsync_dir(dirfd);
  } catch (const Error&) {
    return;  // an orphaned sidecar is harmless, a lost name is not
  }
  // A sync service's conflict copy of this entry still needs the name (a scan, but long names are rare).
  try {
    if (has_conflict_copies(dirfd, backing)) return;
  } catch (const Error&) {
    return;  // cannot tell: an orphaned sidecar is harmless, a lost name is not
  }
  ::unlinkat(dirfd, name_sidecar_of(backing).c_str(), 0);
}

void remove_link_sidecar(int dirfd, std::string_view backing) {
  // As for name sidecars: the symlink's removal on disk first (only symlinks with long targets get here).
  struct stat st;
  if (::fstatat(dirfd, link_sidecar_of(backing).c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return;
  try {
    fsync_dir(dirfd);
  } catch (const Error&) {
    return;
  }
  ::unlinkat(dirfd, link_sidecar_of(backing).c_str(), 0);
}

void remove_side_files(int dirfd, std::string_view backing, bool symlink) {
  remove_name_sidecar(dirfd, backing);
  if (symlink) remove_link_sidecar(dirfd, backing);
}

StagedLinkSidecar stage_link_sidecar(EntryUndo& undo, int fromfd, std::string_view from, int tofd,
                                     std::string_view to) {
  const std::string side_from = link_sidecar_of(from), side_to = link_sidecar_of(to);
  StagedLinkSidecar staged;
  const std::string tmp = temp_name_for(side_to);
  if (::linkat(fromfd, side_from.c_str(), tofd, tmp.c_str(), 0) != 0) throw_errno("link link sidecar");
  undo.created_file(tofd, tmp);
  struct stat st;  // `to` a symlink with a long target too: its own is kept aside until the rename is done
  if (::fstatat(tofd, side_to.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
    staged.kept = temp_name_for(side_to);
    if (::linkat(tofd, side_to.c_str(), tofd, staged.kept.c_str(), 0) != 0) throw_errno("link link sidecar");
    undo.created_file(tofd, staged.kept);
  }
  if (::renameat(tofd, tmp.c_str(), tofd, side_to.c_str()) != 0) throw_errno("rename link sidecar");
  fsync_dir(tofd);  // in place before the symlink's rename (long targets only)
  if (staged.kept.empty())
    undo.created_file(tofd, side_to);
  else
    undo.renamed(tofd, side_to, staged.kept);  // the undo puts `to`'s own back
  return staged;
}

void finish_link_sidecar_move(int fromfd, std::string_view from, int tofd, const StagedLinkSidecar& staged) {
  if (!staged.kept.empty()) ::unlinkat(tofd, staged.kept.c_str(), 0);
  remove_link_sidecar(fromfd, from);
}

void move_link_sidecar(int fromfd, std::string_view from, int tofd, std::string_view to) {
  ::renameat(fromfd, link_sidecar_of(from).c_str(), tofd, link_sidecar_of(to).c_str());
}

void exchange_link_sidecars(int fd1, std::string_view b1, bool long1, int fd2, std::string_view b2, bool long2) {
  if (long1 && long2)
    ::renameat2(fd1, link_sidecar_of(b1).c_str(), fd2, link_sidecar_of(b2).c_str(), RENAME_EXCHANGE);
  else if (long1)
    move_link_sidecar(fd1, b1, fd2, b2);
  else if (long2)
    move_link_sidecar(fd2, b2, fd1, b1);
}

// --- the config and atomic replaces ------------------------------------------------------------------------

format::VolumeConfig load_config(int dirfd, std::string_view name) {
  std::vector<uint8_t> bytes;
  try {
    bytes = read_small_file(dirfd, str(name), kMaxConfigSize);
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::Io && e.sys_errno() == ENOENT)
      throw Error(ErrorKind::NotFound, ENOENT, "not a veilfs volume: " + str(name) + " is missing");
    throw;
  }
  return format::VolumeConfig::parse(bytes);
}

void save_config(int dirfd, const format::VolumeConfig& cfg, std::string_view name) {
  const std::string text = cfg.serialize();
  replace_file(dirfd, name, bytes_of(text), 0400);
}

std::optional<format::VolumeConfig> load_params(int rootfd) {
  auto bytes = read_if_present(rootfd, kParamsName, kMaxConfigSize);
  if (!bytes) return std::nullopt;
  return format::VolumeConfig::parse_params(*bytes);
}

void save_params(int rootfd, const format::VolumeConfig& cfg) {
  const std::string text = cfg.serialize_params();
  replace_file(rootfd, kParamsName, bytes_of(text), 0400);
}

ConfigDir open_config_dir(const std::string& file) {
  const auto slash = file.rfind('/');
  std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : file.substr(0, slash);
  std::string name = slash == std::string::npos ? file : file.substr(slash + 1);
  if (name.empty() || name == "." || name == "..")
    throw Error(ErrorKind::InvalidArgument, EINVAL, file + ": not a file name");
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) throw_errno(dir);
  // A symlink the user made (say, into a dotfiles repo) is followed once here: read_small_file refuses them.
  char target[PATH_MAX];
  ssize_t n = ::readlinkat(fd.get(), name.c_str(), target, sizeof target - 1);
  if (n > 0) {
    target[n] = 0;
    std::string resolved = target[0] == '/' ? std::string(target) : dir + "/" + target;
    const auto s2 = resolved.rfind('/');
    fd = UniqueFd(::open(resolved.substr(0, s2 == 0 ? 1 : s2).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd) throw_errno(resolved);
    name = resolved.substr(s2 + 1);
  }
  return {std::move(fd), std::move(name)};
}

std::string temp_name_for(std::string_view name) {
  return str(name) + str(kTempInfix) + random_hex(kTempHexDigits / 2);
}

bool is_temp_file(std::string_view name) {
  if (name.size() < kReservedPrefix.size() + kTempInfix.size() + kTempHexDigits || !is_reserved(name)) return false;
  std::string_view tail = name.substr(name.size() - kTempHexDigits);
  std::string_view infix = name.substr(name.size() - kTempHexDigits - kTempInfix.size(), kTempInfix.size());
  return infix == kTempInfix &&
         std::all_of(tail.begin(), tail.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

bool is_config_temp(std::string_view name) {
  return is_temp_file(name) && name.size() == kConfigName.size() + kTempInfix.size() + kTempHexDigits &&
         starts_with(name, kConfigName);
}

void replace_file(int dirfd, std::string_view name, std::span<const uint8_t> data, mode_t mode) {
  write_file_atomic(dirfd, str(name), temp_name_for(name), data, mode);
}

}  // namespace veil::layout
