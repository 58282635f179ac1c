// Conflict copies made by sync services. When Syncthing, Dropbox or Nextcloud/ownCloud find two versions of a
// file they keep one under its name and rename the other, putting a marker into the name. In a cipher dir that
// name is a backing name, so the copy no longer decodes: this module recognizes such names, finds the entry they
// were copied from, and builds the name the copy is shown under in the plain view (the same marker, put into the
// plain name where the service would have put it), and back.
//
// Recognized markers (the service inserts them before the name's extension; encoded names have none, so there
// they end up at the end; `veilfs.longname.<hash>` has the hash as its extension):
//   Syncthing            .sync-conflict-YYYYMMDD-HHMMSS-<7-char device id>
//   Dropbox, Nextcloud   " (conflicted copy YYYY-MM-DD HHMMSS)", " (<who>'s conflicted copy YYYY-MM-DD)"
//   ownCloud (<2.5)      _conflict-YYYYMMDD-HHMMSS
//   unison               " (conflict_on_YYYY-MM-DD)", " (conflict #N_on_...)", "..._was_deleted)" (-copyonconflict)
//   rsync --backup       "~", appended to the whole name (not before the extension)
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace veil::layout {

struct ConflictMarker {
  size_t pos = 0;      // where the marker starts in the name it was found in
  std::string marker;  // the marker itself, e.g. ".sync-conflict-20261202-101500-ABCDEFG"
};

// The first recognized marker in a name (backing or plain), or nullopt.
std::optional<ConflictMarker> find_conflict_marker(std::string_view name);

struct ConflictCopy {
  std::string original;  // the backing name the copy was made from
  std::string marker;
};
// A backing name that is a conflict copy: the name it was copied from, and the marker. nullopt for any other.
std::optional<ConflictCopy> parse_conflict_backing(std::string_view backing);

// `name` with `marker` put where the services put it: before the extension (after the last '.', unless that is
// the first character), or at the end.
std::string insert_conflict_marker(std::string_view name, std::string_view marker);

// The name a conflict copy of the plain name `plain` is shown under: insert_conflict_marker(), with the part
// before the marker shortened (on a UTF-8 character boundary) when the whole would be longer than a name may be
// (255 bytes); the mount then finds such a copy by listing its directory.
std::string shown_conflict_name(std::string_view plain, std::string_view marker);

// A name shown in the plain view for a conflict copy, split into the plain name of the original and the marker.
std::optional<std::pair<std::string, std::string>> split_conflict_name(std::string_view shown);

// The backing names a conflict copy of `original` with `marker` may have: where the service puts the marker,
// then at the end (a service that appends).
std::vector<std::string> conflict_backing_candidates(std::string_view original, std::string_view marker);

// A file that a sync tool keeps in the folders it syncs, or writes while a transfer is in progress: Syncthing's
// .stfolder, .stignore, .stversions, .syncthing.*.tmp and ~syncthing~*.tmp; Dropbox's .dropbox*; Nextcloud's and
// ownCloud's .sync_*.db* and .*sync.log; unison's .unison.*; rsync's in-progress ".<name>.XXXXXX". Not an entry
// of the volume: the mount hides it without a warning, fsck reports it as a notice.
bool is_sync_service_file(std::string_view name);

// The plain name an entry of a directory is shown under: decrypt() of its encoded name (a long name's: from its
// sidecar), or, for a sync service's conflict copy, of its original's, with the marker put in (shown_conflict_name).
// nullopt for veilfs's own files and for names that do not decode (*undecodable then says it was meant to be a
// name). *conflict says whether it is a conflict copy. Used by the mount's listings and by fsck alike.
using DecryptName = std::function<std::optional<std::string>(std::string_view encoded)>;
std::optional<std::string> shown_name_of(int dirfd, std::string_view backing, const DecryptName& decrypt,
                                         bool* undecodable = nullptr, bool* conflict = nullptr);

}  // namespace veil::layout
