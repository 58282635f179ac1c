// The replayer: the recorded system calls applied to a model of the cipher dir, and the crash states a power cut
// could leave, built from it.
//
// The model is a tree of objects (files, directories, symlinks) named by id; directories map names to ids. The
// initial tree is a scan of the real cipher dir taken before the recorded run (ids are its inode numbers); each
// recorded creation makes a new id, so an inode number that the filesystem reuses names a new object.
//
// Persistence model (the one ALICE calls "arbitrary reordering within barriers"):
//  * a file's data and size operations (write, truncate, fallocate, chmod) that come before a completed
//    fsync/fdatasync of that file are on disk;
//  * a directory's entry operations (create, link, unlink, rmdir, and rename, which counts for both its
//    directories and is atomic) that come before a completed fsync of that directory are on disk; an fsync of a
//    file does not persist its name;
//  * syncfs/sync persists everything before it;
//  * any other operation may be lost, independently of the operations around it.
// A crash state is "the first i operations of the log, minus a set of operations none of which is forced to
// disk by a barrier among the first i". The explorer builds every prefix, every prefix minus one such
// operation (which includes each operation swapped with its successor: dropping op j from the prefix that ends
// at j + 1), and a seeded sample of prefixes minus several; see CrashStates.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "log_format.hpp"

namespace veil::crash {

struct Node {
  mode_t type = 0;  // S_IFREG, S_IFDIR, S_IFLNK or another S_IF* value
  mode_t perm = 0;
  std::string data;                         // file contents, or the symlink target
  std::map<std::string, uint64_t> entries;  // directories: name -> id
};

struct Tree {
  std::map<uint64_t, Node> nodes;
  uint64_t root = 0;
};

// The real directory `dir` as a tree (ids: inode numbers). Throws std::runtime_error.
Tree scan_tree(const std::string& dir);
// Writes the part of t reachable from its root into the existing empty directory `dir` (hard links as hard
// links; a directory reachable twice, which only a lost rename can make, is written once).
void materialize(const Tree& t, const std::string& dir);
// One line per reachable entry ("path type perm size hash [=first path of the same object]"), sorted: what
// two trees are compared by, and a readable diff.
std::vector<std::string> describe(const Tree& t);
uint64_t tree_hash(const Tree& t);

// A logged operation with its objects resolved to model ids.
struct LoggedOp {
  Record rec;
  uint64_t id = 0, id2 = 0, dir = 0, dir2 = 0;
  int step = 0;  // number of the last Mark before it: the workload step in progress is step + 1
  bool changes_state() const;
  bool is_barrier() const { return rec.op == Op::Fsync || rec.op == Op::Syncfs; }
};

struct Log {
  Tree initial;
  std::vector<LoggedOp> ops;  // in order, Marks included
  size_t baseline = 0;        // operations before this index are on disk in every state (the set-up phase)
  int last_step = 0;
  // Each created object as its creation made it. A state that lost the creation (the new entry) but kept a
  // later operation on the object (a write, a rename, a link) still has the object: the inode exists, its
  // entry is what was lost.
  std::map<uint64_t, Node> births;
};

// Decodes the log and resolves inode numbers against the initial tree. Throws std::runtime_error for a
// damaged log or an operation on an object the log never introduced (a call the recorder missed).
// baseline_step: the Mark whose number it is ends the set-up phase (-1: no set-up phase, explore from the start).
// tear > 0: every write is split at multiples of `tear` bytes of its file into separate operations (pages that
// reach the disk independently: a torn write).
Log parse_log(const Tree& initial, std::string_view bytes, int baseline_step, size_t tear = 0);

// Applies operation `index` of the log to t.
void apply(Tree& t, const Log& log, size_t index);

// A crash state: the first `crash_at` operations, minus `dropped` (indices, ascending).
struct CrashState {
  size_t crash_at = 0;
  std::vector<size_t> dropped;
  int step = 0;  // the last Mark among the first crash_at operations
  enum class Kind { Prefix, DropOne, DropMany } kind = Kind::Prefix;
};

struct ExploreLimits {
  size_t max_states = 3000;   // distinct states checked per workload (prefixes always all of them)
  size_t random_subsets = 0;  // states with several operations lost at once, at random crash points
  uint64_t seed = 1;
  // At each crash point right after a step returned or right before a barrier: every set of two or more of the
  // operations that may be lost there, when there are at most this many of them.
  size_t exhaustive_pool = 8;
};

// For each operation, the index of the first barrier that forces it to disk (ops.size() when none does).
std::vector<size_t> forced_at(const Log& log);
// Whether op j can still be missing in a state that crashed after `crash_at` operations.
inline bool droppable(const Log& log, const std::vector<size_t>& forced, size_t j, size_t crash_at) {
  return j >= log.baseline && j < crash_at && log.ops[j].changes_state() && forced[j] >= crash_at;
}

struct Explored {
  CrashState state;
  uint64_t hash = 0;  // tree_hash of its tree (build_state rebuilds the tree itself)
};

// Every prefix from the baseline on; every prefix minus one droppable operation; at the crash points right after a
// step returned and right before a barrier, every prefix minus any set of droppable operations (when there are at
// most limits.exhaustive_pool of them); and `random_subsets` prefixes minus a random set of droppable operations.
// Duplicates (same tree, same last Mark) are removed. When more than limits.max_states remain, all prefixes are
// kept, then single losses, preferring for each operation the state right after its successor (the swap), the
// state just before its barrier and the states right after a Mark (where the workload's expectations are
// strictest), then several losses, each group sampled with limits.seed when it does not fit. *candidates
// receives the number of distinct states before sampling.
std::vector<Explored> crash_states(const Log& log, const ExploreLimits& limits, size_t* candidates = nullptr);

// The tree of a crash state, from the log.
Tree build_state(const Log& log, const CrashState& s);

}  // namespace veil::crash
