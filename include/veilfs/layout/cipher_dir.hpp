// The cipher dir's own layout: how an encoded name becomes a backing name, and every file veilfs keeps beside
// the entries (long-name sidecars, long symlink targets, directory IV files, the config, temp files of atomic
// replaces). docs/FORMAT.md §3 lists them; this is the only code that spells a reserved name, a prefix or a size
// limit of them. The mount, fsck and the tests all go through it.
//
// It works on (directory descriptor, backing name) and knows nothing of FUSE or of keys: encoded names come in
// already encrypted, IVs are plain bytes.
#pragma once

#include <fcntl.h>
#include <sys/types.h>

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "veilfs/format/config.hpp"
#include "veilfs/format/constants.hpp"
#include "veilfs/names/name_transform.hpp"
#include "veilfs/util/unique_fd.hpp"

namespace veil::layout {

// ---------------------------------------------------------------------------------------------------------
// Backing names

// An encoded name longer than a backing name may be is stored under its hash, the full name in a sidecar.
bool needs_long_name(std::string_view encoded);
std::string long_name_for(std::string_view encoded);  // "veilfs.longname.<base64url(BLAKE2b-256)>"
std::string backing_name(std::string_view encoded);   // the encoded name itself, or its long name
std::string name_sidecar_of(std::string_view long_name);
// Sidecar holding the long symlink target of the entry `backing`.
std::string link_sidecar_of(std::string_view backing);
bool is_long_name(std::string_view backing);  // veilfs.longname.<hash>, not its sidecar
bool is_reserved(std::string_view backing);   // anything veilfs keeps for itself (never an encoded name)
// What a backing symlink holds when its target is in the link sidecar.
bool is_long_link_marker(std::string_view stored);

// What a reserved backing name is, for those that walk a directory (fsck).
enum class Reserved {
  None,         // not reserved: an encoded name, or a foreign file
  Config,       // veilfs.conf (meaningful in the root only)
  Params,       // veilfs.params (meaningful in the root only)
  DirIv,        // veilfs.diriv
  LongName,     // veilfs.longname.<hash>
  NameSidecar,  // veilfs.longname.<hash>.name
  LinkSidecar,  // veilfs.link.<backing name>
  Temp,         // <one of ours>.tmp.<16 hex digits>: an atomic replace interrupted by a crash
  Unknown,      // starts with the reserved prefix but is none of the above
};
Reserved classify(std::string_view backing);
// The entry a sidecar belongs to: the long name of a NameSidecar, the backing name of a LinkSidecar's symlink.
std::string sidecar_owner(std::string_view sidecar, Reserved kind);

// ---------------------------------------------------------------------------------------------------------
// Reading what an entry stands for

// The encoded name a long-name entry stands for, from its sidecar. Throws Error: Io (ENOENT when the sidecar is
// missing), Corrupt when it is not a regular file, larger than a valid one (not read then), does not hash to
// `long_name`, or holds a name short enough to be stored directly (veilfs never writes that; it would give one
// name two entries). The Corrupt messages are fsck's problem texts.
std::string read_long_name(int dirfd, std::string_view long_name);
// The encoded name behind any non-reserved or long-name backing name.
std::string encoded_name_of(int dirfd, std::string_view backing);

// The stored (encrypted) target of symlink `backing` in dirfd, inline or from its sidecar. Throws Io (ENOENT: the
// sidecar is missing) or Corrupt (a sidecar that is not a regular file or larger than any valid target).
std::string read_link_target(int dirfd, std::string_view backing);
// The same, when the symlink itself was already read (e.g. through an O_PATH descriptor): `inline_target` is
// what it holds.
std::string link_target_from(std::string inline_target, int dirfd, std::string_view backing);
// readlinkat into a string (never follows); throws Io.
std::string read_symlink(int dirfd, const char* name);

// ---------------------------------------------------------------------------------------------------------
// Directory IV files

// nullopt when the directory has no IV file (crash between mkdir and IV creation, or an IV file that a sync
// service has not delivered yet): the caller derives it. Throws Corrupt if it has the wrong size.
std::optional<DirIv> read_dir_iv(int dirfd);
// The same, with a torn IV file (wrong size: a crash right after mkdir) treated as missing; *torn says which.
std::optional<DirIv> read_dir_iv_if_intact(int dirfd, bool* torn = nullptr);
// Atomic replace: temp file, fsync, rename, fsync directory.
void write_dir_iv(int dirfd, const DirIv& iv);
// A directory entry of the cipher dir, opened without following symlinks (O_PATH unless other flags are given).
UniqueFd open_dir(int parentfd, std::string_view backing, int flags = O_PATH);
UniqueFd open_dir_for_listing(int dirfd);  // "." of an O_PATH descriptor, readable

// A non-root daemon may meet directories without owner write/search permission (mode 0151 is legal): the
// helpers below then open them up for their own step and restore the mode. Root needs no such help.
struct Access {
  bool as_root = false;
};
// Removes the IV file of a directory that is to be removed or replaced, returning what it held (nullopt: there
// was none, or it was torn) so that it can be put back.
std::optional<DirIv> strip_dir_iv(int parentfd, std::string_view backing, Access a);
// Whether directory `backing` holds nothing but its IV file: rmdir and rename-over check this before they strip
// the IV file, so that a directory that is not empty never loses it (also not for a moment a crash could catch).
// Throws Io (e.g. EACCES: a directory its owner may not read).
bool holds_only_dir_iv(int parentfd, std::string_view backing);
// Puts an IV file back (after strip_dir_iv, when the removal failed: another writer put an entry in meanwhile),
// atomically and fsynced. Throws on failure.
void restore_dir_iv(int parentfd, std::string_view backing, const DirIv& iv, Access a);
// Before a directory is renamed: a derived IV depends on the directory's name, so the IV file must be on disk
// (written from iv_if_missing() when absent or torn) before the rename is.
void persist_dir_iv(int parentfd, std::string_view backing, const std::function<DirIv()>& iv_if_missing, Access a);

// ---------------------------------------------------------------------------------------------------------
// Making and removing entries' side files

// Undo for a half-made entry: every step recorded in it is undone, newest first, when it is destroyed (an
// exception unwinding, an early return), unless dismiss() was called after the entry was complete. Undo steps
// are best effort; a failed one is passed to on_failure (with the backing name, never a plaintext name).
class EntryUndo {
 public:
  explicit EntryUndo(std::function<void(const std::string& backing)> on_failure = {});
  ~EntryUndo();
  EntryUndo(const EntryUndo&) = delete;
  EntryUndo& operator=(const EntryUndo&) = delete;

  void created_file(int dirfd, std::string name);  // a file, symlink, node or sidecar: unlink it
  void created_dir(int dirfd, std::string name);   // a directory: rmdir it (harmless if something went in)
  void stripped_dir_iv(int parentfd, std::string dir, const DirIv& iv, Access a);  // put the IV file back
  void renamed(int dirfd, std::string from, std::string to);                       // rename it back
  void dismiss() { steps_.clear(); }

 private:
  enum class Kind { File, Dir, DirIv, Renamed };
  struct Step {
    Kind kind;
    int dirfd;
    std::string name;
    DirIv iv{};
    Access access{};
    std::string to;  // Renamed: where `name` went
  };
  std::vector<Step> steps_;
  std::function<void(const std::string&)> on_failure_;
};

// Writes the sidecar of a long-name entry about to be made (nothing for a short name). An existing sidecar is
// reused: either the entry exists too (must_be_new: EEXIST) or it is an orphan a crash left, holding the same
// name. Records a sidecar it created in undo.
void add_name_sidecar(EntryUndo& undo, int dirfd, std::string_view backing, std::string_view encoded, bool must_be_new);
// Where a symlink's stored target goes: returns what the backing symlink itself holds (the target, or the marker
// with the target written to the link sidecar, recorded in undo; an orphaned sidecar of that name is replaced).
std::string add_link_target(EntryUndo& undo, int dirfd, std::string_view backing, const std::string& stored);
bool link_target_is_long(std::string_view stored);  // would go to a sidecar
// Before rmdir or a rename over directory `dir`: ENOTEMPTY if it holds anything but its IV file (which then stays
// untouched); otherwise removes the IV file, recorded in undo (put back, fsynced, if the removal fails after all).
void strip_iv_of_empty_dir(EntryUndo& undo, int parentfd, std::string_view dir, Access a);
// The IV file of directory `dir` just made in parentfd (not yet used by anyone), written in place without fsync:
// until the directory is renamed a lost IV file is derived again, identically (persist_dir_iv). Recorded in undo.
void add_dir_iv(EntryUndo& undo, int parentfd, std::string_view dir, const DirIv& iv);
// Best effort, after the entry itself is gone: its sidecars (those it may have) go too.
void remove_side_files(int dirfd, std::string_view backing, bool symlink);
// Of a long name; nothing for a short one, and kept while a sync service's conflict copy of the entry needs it.
void remove_name_sidecar(int dirfd, std::string_view backing);
bool has_conflict_copies(int dirfd, std::string_view backing);  // a scan of the directory
void remove_link_sidecar(int dirfd, std::string_view backing);
// Before symlink `from` (with a long target) is renamed to `to`: its sidecar is linked under `to`'s sidecar name
// first (atomically replacing one `to` may have, kept aside for the undo), so that no crash leaves the moved
// symlink without its target; `from` keeps its own until finish_link_sidecar_move(), after the rename.
struct StagedLinkSidecar {
  std::string kept;  // `to`'s previous sidecar, under a temp name (empty: there was none)
};
StagedLinkSidecar stage_link_sidecar(EntryUndo& undo, int fromfd, std::string_view from, int tofd, std::string_view to);
void finish_link_sidecar_move(int fromfd, std::string_view from, int tofd, const StagedLinkSidecar& staged);
void move_link_sidecar(int fromfd, std::string_view from, int tofd, std::string_view to);  // after an exchange
void exchange_link_sidecars(int fd1, std::string_view b1, bool long1, int fd2, std::string_view b2, bool long2);

// ---------------------------------------------------------------------------------------------------------
// The config and atomic replaces

// Throws NotFound when there is no config (not a volume), Corrupt when it does not parse. `name` is veilfs.conf
// in a cipher dir, or the file name of a config kept elsewhere (--config FILE) in its directory.
format::VolumeConfig load_config(int dirfd, std::string_view name = format::kConfigName);
void save_config(int dirfd, const format::VolumeConfig& cfg, std::string_view name = format::kConfigName);
// veilfs.params at the cipher dir's root: the config without its key slots, so that the recovery code alone
// (with the cipher dir) opens the volume and recreates a lost config. nullopt when there is none (volumes made
// before it existed, until a veilkey command saves their config); Corrupt when it does not parse.
std::optional<format::VolumeConfig> load_params(int rootfd);
void save_params(int rootfd, const format::VolumeConfig& cfg);
// An external config (--config FILE): the directory that holds it (opened, following symlinks the user made)
// and its name there. Throws Io naming the path.
struct ConfigDir {
  UniqueFd dir;
  std::string name;
};
ConfigDir open_config_dir(const std::string& file);
// Temp file of an atomic replace of `name`: "<name>.tmp.<16 hex digits>".
std::string temp_name_for(std::string_view name);
bool is_temp_file(std::string_view name);
bool is_config_temp(std::string_view name);  // a veilkey killed between writing its temp config and the rename
// Atomic replace of one of veilfs's own files: temp file, fsync, rename over name, fsync the directory.
void replace_file(int dirfd, std::string_view name, std::span<const uint8_t> data, mode_t mode);

}  // namespace veil::layout
