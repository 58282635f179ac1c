// What a workload promises about its files, and the check of one crash state against it.
//
// Expectations is the workload's own history, step by step (step 0 is the set-up phase, on disk before any
// crash state; step k > 0 is the k-th workload call, after which the test writes Mark k into the log): every
// object it made, every version of every file, every name each directory had, and every fsync that returned. A
// crash state whose last Mark is m was cut while step m + 1 was running (or, with the kernel's writeback cache,
// while the data of any earlier step was still on its way), so it is judged by:
//
//   EIO         every listed entry can be looked up, listed, read to its end and read as a link;
//   MISSING     a name its directory had at the directory's last completed fsync, and kept through step m + 1,
//               is listed;
//   UNEXPECTED  a listed name is one its directory had at or after its last completed fsync;
//   TYPE        a listed entry is a file, directory or symlink as one of the objects it may be;
//   CONTENT     a file reads as a version it had since its last completed fsync (exactly that version when no
//               step up to m + 1 changed it after the fsync), or as a documented in-between: a version the
//               engine's steps leave on the way (added by the workload per operation, see Workload), or a
//               block-wise mix of those versions (each B-byte block as in one of them, zero past a version's
//               end) of one of their sizes or a block multiple between them, which is what a plain disk shows
//               when some of a write's pages did not make it;
//   TARGET      a symlink reads as its target;
//   FSCK        fsck's problems are all repairable: after fsck --repair on a copy, a second check is clean;
//   OPEN/SECRET the volume opens (keytool workloads: with the secrets the step allows).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "veilfs/crypto/secret.hpp"
#include "veilfs/volume.hpp"

namespace veil::crash {

constexpr int kNone = -1;  // no object: a name that is unbound

struct Violation {
  Violation(std::string r, std::string p, std::string d, std::string k = {})
      : rule(std::move(r)), path(std::move(p)), detail(std::move(d)), kind(std::move(k)) {}
  std::string rule;  // EIO, MISSING, UNEXPECTED, TYPE, CONTENT, TARGET, FSCK, OPEN, SECRET
  std::string path;  // plaintext path
  std::string detail;
  std::string kind;  // FSCK: the problem's kind ("sidecar-bad", ...)
  std::string line() const { return rule + (kind.empty() ? "" : "(" + kind + ")") + " " + path + ": " + detail; }
};

class Expectations {
 public:
  Expectations();  // object 0 is the root directory, on disk at step 0

  int step() const { return step_; }
  void begin_step(std::string what);
  std::string step_name(int k) const;

  // A new object bound as `name` in `dir` at the current step: a file with `content`, a symlink to `content`,
  // or a directory.
  int make(int dir, const std::string& name, mode_t type, std::string content = {});
  void set_content(int obj, std::string content);        // a new version of a file
  void allow(int obj, std::string content);              // a documented in-between of the current step
  void bind(int dir, const std::string& name, int obj);  // obj kNone: the name goes
  void synced(int obj);                                  // an fsync of obj returned in the current step
  void baseline();                                       // everything made so far is on disk (step 0)

  int lookup(int dir, const std::string& name) const;  // now; kNone when unbound
  std::map<std::string, int> entries(int dir) const;   // now
  mode_t type(int obj) const { return objs_.at(obj).type; }
  const std::string& content(int obj) const;  // the latest version (a symlink's target)
  int parent_at_creation(int obj) const { return objs_.at(obj).created_in; }
  const std::string& name_at_creation(int obj) const { return objs_.at(obj).created_as; }
  size_t objects() const { return objs_.size(); }
  // Every (directory, name) pair that was ever bound.
  std::vector<std::pair<int, std::string>> all_names() const;

  // --- judging a crash state whose last Mark is m ---
  struct Binding {
    std::vector<int> objs;  // what the name may be
    bool may_be_absent = false;
    int synced_step = -1;  // the directory's last completed fsync (-1: none)
  };
  Binding binding(int dir, const std::string& name, int m) const;
  std::vector<std::string> names(int dir) const;  // every name dir ever had
  struct Versions {
    std::vector<std::string> contents;  // every allowed content (in-betweens included)
    std::vector<std::string> labels;    // "step 3", "step 3 in-between", ...
    int synced_step = -1;
    bool exact = false;  // only the fsynced version
  };
  Versions versions(int obj, int m) const;

 private:
  struct Version {
    int step;
    std::string content;
    bool inbetween;
  };
  struct Obj {
    mode_t type = 0;
    std::vector<Version> versions;
    std::vector<int> syncs;
    int created_in = kNone;
    std::string created_as;
  };
  int last_sync(int obj, int m) const;

  std::vector<Obj> objs_;
  std::map<std::pair<int, std::string>, std::vector<std::pair<int, int>>> names_;  // (dir, name) -> (step, obj)
  std::map<int, std::map<std::string, int>> now_;
  std::vector<std::string> step_names_{"set-up"};
  int step_ = 0;
};

// How a state is opened and judged.
struct CheckSetup {
  const Expectations* expect = nullptr;
  SecretBytes master;  // opens the volume (unless open_volume is given)
  uint64_t block = 0;  // plaintext block size
  // Keytool workloads: opens the state's volume with the secrets step m allows, adding SECRET violations;
  // returns the master key that opened it (empty when none did).
  std::function<SecretBytes(const std::string& dir, int m, std::vector<Violation>& out)> open_volume;
};

// Judges the volume in `dir` (a crash state whose last Mark is m). `fresh_copy` makes another copy of the same
// state and returns its directory (fsck --repair runs there). Fs (the mount's own code, without the kernel)
// reads it, and fsck's Checker checks it.
std::vector<Violation> check_state(const std::string& dir, int m, const CheckSetup& setup,
                                   const std::function<std::string()>& fresh_copy);

// Whether got is one of the versions or a documented in-between of them (see CONTENT above).
bool content_allowed(const std::string& got, const std::vector<std::string>& versions, uint64_t block);

}  // namespace veil::crash
