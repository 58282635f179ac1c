// fsck's engine: walks a cipher dir without mounting it and reports everything that the mount would fail to
// read, or would silently hide. Usable from tests without a process (fsck_main is a thin shell around it).
//
// Memory stays bounded however large the volume: the walk holds one small getdents buffer per directory level
// (not the tree, not a directory's listing), each file is verified in fixed-size chunks, and problems are streamed
// to a callback with only the first `max_kept_problems` kept in the Report.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "veilfs/volume.hpp"

namespace veil::fsck {

enum class ProblemKind {
  ConfigCorrupt,      // veilfs.conf does not parse, or its parameters were tampered with
  TempLeftover,       // veilfs.conf.tmp.* / veilfs.diriv.tmp.*: a crash between write and rename (repairable)
  DirIvMissing,       // no veilfs.diriv: the mount derives it, but a sync service may deliver another later
  DirIvBad,           // veilfs.diriv has the wrong size or type
  NameUndecryptable,  // looks like an encrypted name but does not authenticate in this directory
  ForeignEntry,       // not a veilfs name at all (or a reserved name used wrongly): the mount hides it
  SidecarMissing,     // veilfs.longname.X without X.name: the entry is invisible in the mount
  SidecarBad,         // sidecar too large, unreadable, or not matching its hashed short name
  SidecarOrphaned,    // X.name or veilfs.link.X with no X (repairable)
  LinkTargetBad,      // symlink target (inline or long-link sidecar) does not decrypt
  HeaderBad,          // file header truncated, unknown version, non-zero reserved bytes
  Truncated,          // file cut at a block boundary (the last block lacks the final-block marker)
  BlocksBad,          // blocks that fail authentication (flipped bits, swapped or moved blocks, ...)
  XattrBad,           // user.veilfs.* name or value that does not decrypt
  XattrForeign,       // a user.* attribute that veilfs did not write (the mount hides it)
  TooDeep,            // directory nesting beyond the walk's limit: not descended
  IoError,            // a system call failed on this entry
  // Notices: reported, but not damage (not counted in problem_count, fsck's exit status stays 0).
  ConflictCopy,     // a sync service's conflict copy of an entry: shown in the mount with the service's marker
  DirIvShared,      // two directories with one IV (see docs/SECURITY.md, "Equalities")
  SyncServiceFile,  // .stfolder, .syncthing.*.tmp, .dropbox, ...: a sync tool's own file, hidden by the mount
};
bool is_notice(ProblemKind k);
std::string_view kind_name(ProblemKind k);

struct Problem {
  ProblemKind kind;
  std::string path;         // plain path ("/docs/a.txt"); undecryptable components appear as cipher names
  std::string cipher_path;  // relative to the cipher dir ("." for its root)
  std::string detail;
  bool repaired = false;
  std::string line() const;  // "<kind> <path>: <detail>", what fsck prints and tests compare
};

struct Stats {
  uint64_t entries = 0;  // named entries below the root
  uint64_t dirs = 0, files = 0, symlinks = 0, others = 0;
  uint64_t bytes = 0;  // plaintext bytes verified
};

struct Report {
  bool config_ok = false;
  std::vector<Problem> problems;  // the first max_kept_problems, in walk order
  uint64_t problem_count = 0;     // all of them
  uint64_t repaired_count = 0;
  uint64_t notice_count = 0;  // notices (conflict copies), not problems
  Stats stats;
  bool clean() const { return problem_count == 0; }
  // Lines of the kept problems, sorted (readdir order is the filesystem's; tests want a stable order).
  std::vector<std::string> sorted_lines() const;
};

struct Options {
  bool repair = false;  // remove temp leftovers; nothing else is ever modified (orphans: see delete_orphans)
  // With repair: also remove orphaned sidecars. Destructive on a tree a sync service is still filling in (it
  // fetches files in any order: the entry may yet arrive, and the deletion would sync to every copy).
  bool delete_orphans = false;
  // With repair: give each sync conflict copy (a regular file) an ordinary encrypted name, the name the mount
  // shows it under, when that name is free.
  bool rename_conflicts = false;
  size_t max_kept_problems = 100000;
  std::function<void(const Problem&)> on_problem;                 // every problem, as found
  std::function<void(const std::string& cipher_path)> on_repair;  // every removal, after it is done
  std::function<void(const Stats&)> on_progress;                  // called often; the callee throttles
  unsigned max_depth = 1024;                                      // directory levels (one descriptor each)
  std::string config_file;  // --config FILE: the config kept outside the cipher dir (empty: veilfs.conf)
};

// Checks an opened volume's tree (the config was checked when it was opened).
class Checker {
 public:
  Checker(const Volume& volume, Options opt);
  Report run();

 private:
  struct Dir;
  void add(ProblemKind kind, const std::string& path, const std::string& cipher_path, std::string detail,
           bool repaired = false);
  void check_dir_entries(std::vector<std::unique_ptr<Dir>>& stack);
  void check_entry(std::vector<std::unique_ptr<Dir>>& stack, Dir& dir, const std::string& name);
  void check_file(UniqueFd fd, const std::string& path, const std::string& cpath);
  void check_symlink(Dir& dir, const std::string& name, const std::string& path, const std::string& cpath);
  void check_xattrs(int fd, const std::string& path, const std::string& cpath);
  void progress();
  bool derived_iv_is_proven(int dirfd, const DirIv& iv);

  // A regular file with several names (hard links) is checked once, at the first name the walk meets; its
  // problems are held until every other name was seen (or the walk ends) and then reported once, naming them.
  struct Linked {
    std::vector<Problem> problems;
    std::vector<std::string> other_names;
    uint64_t names_left = 0;
  };
  void report_linked(Linked& l);

  const Volume& vol_;
  Options opt_;
  Report report_;
  std::unordered_map<std::string, std::string> ivs_seen_;   // IV bytes -> first directory (plain path) with it
  std::map<std::pair<uint64_t, uint64_t>, Linked> linked_;  // by (st_dev, st_ino); entries go once all names are seen
  std::vector<Problem>* held_ = nullptr;                    // while checking a linked file: add() collects here
};

// The whole check: loads and unlocks the config, then walks the tree. A corrupt or tampered config is reported
// as a ConfigCorrupt problem (config_ok false, no walk). Throws veil::Error for what is not damage: NotFound
// (no config), WrongSecret, Unsupported, or an I/O error opening the cipher dir.
Report check_volume(const std::string& cipherdir, std::span<const uint8_t> secret, const Options& opt);

}  // namespace veil::fsck
