// The crash explorer: a workload runs through a real mount whose daemon (or a veilkey command) runs under the
// recorder; afterwards every crash state the persistence model allows (replay.hpp) is rebuilt in a scratch
// directory and judged against the workload's expectations (expect.hpp). Violations are reported per state with
// the operations that led to it, the dropped ones marked.
//
// Environment: VEILFS_CRASH_STRICT=1 makes workloads with known violations fail instead of skip;
// VEILFS_CRASH_MAX_STATES (default 3000) bounds the states checked per workload; VEILFS_CRASH_SUBSETS (default
// 400) is the number of sampled states with several operations lost; VEILFS_CRASH_SEED (default 1) seeds the
// sampling; VEILFS_CRASH_TEAR=4096 tears every write into pages; VEILFS_CRASH_VERBOSE=1 prints every finding's
// operations; VEILFS_CRASH_DUMP=1 prints the whole log; VEILFS_CRASH_KEEP=1 keeps the scratch directories.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "expect.hpp"
#include "replay.hpp"

namespace veil::daemon_harness {
struct Scratch;
class Daemon;
}  // namespace veil::daemon_harness

namespace veil::crash {

// The passphrase of every explorer volume.
inline constexpr std::string_view kPassphrase = "crash explorer passphrase";

// The workload's calls through the mount. Each call after baseline() is one step: it runs, the expectations
// learn what it did, and Mark <step> goes into the log. Before baseline(), calls are the set-up phase (step 0).
// Paths are relative to the mount root ("" is the root). A call that fails throws std::runtime_error.
class Workload {
 public:
  Workload(std::string mnt, Expectations& e, uint64_t block, std::function<void(int, const std::string&)> mark);

  void create(const std::string& p);                                        // open(O_CREAT | O_EXCL), close
  void write(const std::string& p, uint64_t off, const std::string& data);  // open, pwrite, close (no fsync)
  void append(const std::string& p, const std::string& data);
  void truncate(const std::string& p, uint64_t size);  // truncate(2)
  void open_trunc(const std::string& p);               // open(O_TRUNC), close
  void fsync(const std::string& p);                    // a file, or a directory ("" for the root)
  void fdatasync(const std::string& p);
  void rename(const std::string& a, const std::string& b);
  void unlink(const std::string& p);
  void mkdir(const std::string& p);
  void rmdir(const std::string& p);
  void rmdir_not_empty(const std::string& p);  // rmdir must fail with ENOTEMPTY and change nothing
  void symlink(const std::string& target, const std::string& p);
  void link(const std::string& a, const std::string& b);
  // Ends the set-up phase: fsyncs every object made so far through the mount, then Mark 0.
  void baseline();

  // A file made and fsynced (file and directory) in one go: several steps, or set-up.
  void put_durable(const std::string& p, const std::string& data);
  const std::string& content(const std::string& p) const;

 private:
  std::string at(const std::string& p) const { return p.empty() ? mnt_ : mnt_ + "/" + p; }
  std::pair<int, std::string> parent_of(const std::string& p) const;  // (directory object, last name)
  int object(const std::string& p) const;
  template <class F>
  void step(const std::string& what, F&& f);

  std::string mnt_;
  Expectations& e_;
  uint64_t block_;
  std::function<void(int, const std::string&)> mark_;
  bool setup_ = true;
};

struct Finding {
  std::string summary;  // one line: how the state was made, and the rules it breaks
  std::string cls;      // the same without the files and steps: what kind of operation, which kinds of rules
  std::string example;  // the first such state in full: the operations, the dropped ones marked, what was seen
  size_t states = 0;    // how many checked states show it
};

struct Result {
  std::string name;
  size_t ops = 0, candidates = 0, checked = 0, violating = 0;
  double record_seconds = 0, explore_seconds = 0;
  std::vector<Finding> findings;
  std::vector<std::string> classes;  // "<cls>  [findings 1, 4; 12 states]"
  std::vector<std::string> fatal;    // the explorer itself is wrong (recorder gap, workload model wrong)
  std::string summary() const;
};

class Explorer {
 public:
  explicit Explorer(const std::string& name);
  ~Explorer();
  Explorer(const Explorer&) = delete;
  Explorer& operator=(const Explorer&) = delete;

  // Mounts the volume. record: snapshot the cipher dir first and run the daemon under the recorder.
  Workload& mount(bool record = true);
  void unmount();
  // Keytool workloads: snapshots the (unmounted) cipher dir, then runs veilkey with argv (after "veilkey")
  // under the recorder as one step. Returns its exit status.
  int run_recorded_veilkey(const std::string& what, const std::vector<std::string>& args);
  // Torn writes: every recorded write reaches the disk in pieces of `bytes` (its pages), each of which may be
  // lost on its own (0: writes are atomic, the default; VEILFS_CRASH_TEAR sets it for every workload).
  void set_tear(size_t bytes) { tear_ = bytes; }
  // Keytool workloads: how a state's volume is to be opened (see CheckSetup::open_volume).
  void set_open_rule(std::function<SecretBytes(const std::string& dir, int m, std::vector<Violation>& out)> rule);

  Expectations& expect() { return expect_; }
  const std::string& cipher() const;
  const std::string& base() const;
  const std::string& passfile() const;
  uint64_t block_size() const { return block_; }

  // Unmounts if needed, replays the log and checks every crash state.
  Result explore();
  // The same on a log the caller edited (self-tests: a missing record must be caught).
  Result explore_log(const std::string& log_bytes);
  std::string log_bytes() const;

  // Judges a volume directory (by default the real cipher dir as the run left it) with the last step's
  // expectations; self-tests damage a copy first.
  std::vector<Violation> check_now(const std::string& dir = {});
  // A copy of the cipher dir as it is now, in a new directory under the scratch dir.
  std::string copy_cipher(const std::string& name);
  const Volume& volume() const { return *vol_; }

 private:
  void snapshot();
  void mark(int step, const std::string& what);
  std::string label_path(const std::string& rel) const;
  std::string describe_op(size_t index, const Log& log) const;
  std::string op_kind(size_t index, const Log& log) const;

  std::string name_;
  std::unique_ptr<daemon_harness::Scratch> scratch_;
  std::unique_ptr<daemon_harness::Daemon> daemon_;
  std::unique_ptr<Volume> vol_;
  std::unique_ptr<Workload> workload_;
  Expectations expect_;
  std::optional<Tree> initial_;
  std::string log_path_, work_;
  int log_fd_ = -1;
  uint64_t block_ = 0;
  size_t tear_ = 0;
  double record_seconds_ = 0;
  std::chrono::steady_clock::time_point mounted_at_;
  std::function<SecretBytes(const std::string&, int, std::vector<Violation>&)> open_rule_;
  mutable std::map<std::string, std::string> labels_;  // backing name -> plaintext name (label_path)
  mutable size_t labels_for_ = SIZE_MAX;               // the number of names they were made for
};

// Prints the result; returns true when the test must be skipped as a known failure (its violations printed).
// Fails the test (ADD_FAILURE) for fatal problems, and for violations unless `known` and VEILFS_CRASH_STRICT is
// unset.
bool conclude(const Result& r, bool known);

// An open rule for keytool workloads whose veilkey call is step `step`: before it returned (m < step) the old or
// the new passphrase opens (never neither; with !replaces always the old one); after it, the new one, and the
// old one exactly when !replaces.
std::function<SecretBytes(const std::string&, int, std::vector<Violation>&)> passphrase_rule(std::string old_pass,
                                                                                             std::string new_pass,
                                                                                             bool replaces, int step);

}  // namespace veil::crash

// In a test body: explore, report, and skip (known violations) or fail as conclude() decides.
#define VEILFS_CRASH_EXPLORE(explorer, known)                                                       \
  do {                                                                                              \
    const ::veil::crash::Result veilfs_crash_r_ = (explorer).explore();                             \
    if (::veil::crash::conclude(veilfs_crash_r_, known)) GTEST_SKIP() << veilfs_crash_r_.summary(); \
  } while (0)
