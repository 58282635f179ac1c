// Harness of the sync suite (tests/sync): real sync tools (Syncthing, unison, rsync) and real network storage
// (sshfs over a local sshd) under and around veilfs. It builds on the mount harness of tests/integration (run(),
// TempDir, VolumeDir, Mount, file helpers) and adds:
//   - feature probes for behaviour that may not have landed yet (--shared-storage, plain names of the backing
//     conflict copies each tool makes), so that a test can skip loudly naming the missing feature;
//   - snapshots of whole trees (plain or cipher) and their differences, polling with a deadline, fsck;
//   - N Syncthing instances on 127.0.0.1 with generated configs, driven through their REST API;
//   - unison and rsync runs; an sshd on 127.0.0.1 with throw-away keys and sshfs mounts of it.
// Nothing here waits a fixed time for synchronisation: every wait polls a condition until a deadline.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "harness.hpp"

namespace veilsync {

using veiltest::Mount;
using veiltest::RunResult;
using veiltest::TempDir;
using veiltest::UniqueFd;
using veiltest::VolumeDir;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr int kSlowdown = 3;  // sanitized daemon: every deadline three times as long
#else
inline constexpr int kSlowdown = 1;
#endif

// ---- loud skips naming the missing feature or tool ----
void print_loud_note(const std::string& what);  // a banner on stderr (for skips and for tolerated findings)
#define VEILSYNC_SKIP(reason)                 \
  do {                                        \
    const std::string veilsync_r_ = (reason); \
    ::veilsync::print_loud_note(veilsync_r_); \
    GTEST_SKIP() << veilsync_r_;              \
  } while (0)
// Skips when a required program is not installed (scripts/install-deps.sh installs them all).
std::string missing_program(const std::vector<std::string>& programs);

// ---- features of the daemon under test ----
// `veilfs --help` mentions --shared-storage (the option is refused by daemons that predate it).
bool have_shared_storage();
inline const char* kSharedStorageFeature =
    "FEATURE NOT YET IN veilfs: --shared-storage (a mount coherent with other writers of its cipher dir)";
// What the plain view shows for a backing entry that a tool renamed with `rename_backing(ENC)`: a volume with
// one file `probe.txt` is made, its backing file renamed, and the plain root listed. Returns the plain names
// listed whose content is the probe's (empty: the renamed copy is invisible). Cached per form.
std::vector<std::string> probe_renamed_backing(const std::string& form_name,
                                               const std::function<std::string(const std::string&)>& rename_backing);
// The three forms the tools produce (see tests/sync/README.md for the sources).
std::vector<std::string> probe_syncthing_conflict();  // ENC.sync-conflict-20261202-101500-ABCDEFG
std::vector<std::string> probe_unison_conflict();     // ENC (conflict_on_2026-12-02)
std::vector<std::string> probe_rsync_backup();        // ENC~
// unison's copy of what was kept against a deletion: ENC (conflict_on_2026-12-02_was_deleted)
std::vector<std::string> probe_unison_deleted_conflict();

// ---- trees ----
struct Node {
  char type = '?';  // f d l o (other), e (could not be read)
  unsigned mode = 0;
  std::string data;  // file contents, symlink target, or the error
  bool operator==(const Node&) const = default;
};
using Tree = std::map<std::string, Node>;  // path relative to the root ("a/b.txt")
// The whole tree under root (contents read in full: the trees of these tests are small). Entries for which
// skip(name) is true are left out, with everything below them.
Tree snapshot(const std::string& root, const std::function<bool(const std::string&)>& skip = {});
// Empty when equal, else up to max_lines lines "only in A / only in B / differs".
std::string tree_difference(const Tree& a, const Tree& b, const std::string& name_a = "A",
                            const std::string& name_b = "B", size_t max_lines = 25);
// Paths of a tree whose last component matches re.
std::vector<std::string> matching(const Tree& t, const std::regex& re);
// The file paths holding exactly `content`.
std::vector<std::string> holding(const Tree& t, const std::string& content);
std::string basename_of(const std::string& path);

// Polls pred every 20 ms until it holds or the deadline passes; returns how long it took, or nullopt.
std::optional<std::chrono::milliseconds> eventually(const std::function<bool()>& pred, std::chrono::milliseconds limit);

// ---- fsck ----
struct FsckOutcome {
  int code = -1;
  std::string output;
  std::vector<std::string> problems;  // the problem lines ("<kind> <path>: <detail>")
};
FsckOutcome run_fsck(const std::string& cipher, const std::string& passfile);
// Empty when fsck exits 0; otherwise the problems not matched by any of `tolerated` (each tolerated one printed
// as a loud note, so that it is seen without failing the test), or the whole output if fsck failed otherwise.
std::string fsck_damage(const std::string& cipher, const std::string& passfile,
                        const std::vector<std::regex>& tolerated = {});

// ---- ports, HTTP ----
int free_tcp_port();  // a port on 127.0.0.1 that was free a moment ago
struct HttpResponse {
  int status = -1;
  std::string body, error;
};
HttpResponse http(const std::string& method, int port, const std::string& target, const std::string& api_key = "",
                  const std::string& json_body = "");

// A process started in the background with its output in a log; SIGTERM and reaped at destruction.
class Child {
 public:
  Child() = default;
  Child(const std::vector<std::string>& argv, const std::string& log_path, const std::vector<std::string>& env = {});
  ~Child() { stop(); }
  Child(Child&&) = delete;
  bool running();
  // SIGTERM, then SIGKILL after the grace period; returns the exit status (128+signal when killed).
  int stop(std::chrono::milliseconds grace = 10s);
  pid_t pid() const { return pid_; }
  std::string log() const;

 private:
  pid_t pid_ = -1;
  UniqueFd pidfd_;
  std::string log_path_;
  int status_ = -1;
};

// ---- Syncthing ----
// N instances, each sharing folder "veil" (its own directory) with every other instance, on 127.0.0.1 only:
// global and local discovery, relays, NAT traversal, usage reporting, upgrades and crash reports off; static
// addresses; listen and GUI/REST on random loopback ports with an API key; fsWatcher on (1 s delay) and a
// short rescan interval. The folder directories must exist (a `.stfolder` marker is created in each).
class Syncthing {
 public:
  Syncthing(const std::string& workdir, const std::vector<std::string>& folders);
  ~Syncthing();
  // Starts every instance and waits until each is connected to every other. Returns an error or empty.
  std::string start();
  void stop();
  size_t size() const { return nodes_.size(); }
  const std::string& device_id(size_t i) const { return nodes_[i].id; }
  std::string short_id(size_t i) const { return nodes_[i].id.substr(0, 7); }
  // Every instance pauses every other device, and waits until no connection is left ("disconnected").
  std::string disconnect();
  // Resumes them and waits until all are connected again.
  std::string reconnect();
  // Rescans every folder now (POST /rest/db/scan returns when the scan is done).
  std::string scan_all();
  // Waits until every instance reports the folder idle with nothing needed, every peer's completion at 100 %,
  // and the same global state everywhere; the scans are triggered first. Returns an error (with the folder
  // errors and states) or empty.
  std::string wait_in_sync(std::chrono::seconds limit);
  std::string logs_tail() const;

 private:
  struct NodeConf {
    std::string home, folder, id, api_key, log;
    int port = 0, gui_port = 0;
    std::unique_ptr<Child> proc;
  };
  HttpResponse api(size_t i, const std::string& method, const std::string& target, const std::string& body = "") const;
  std::string connections_all(bool want_connected, std::chrono::seconds limit);
  std::vector<NodeConf> nodes_;
  int reconnects_ = 0;
};

// ---- unison, rsync ----
// unison A B -batch -auto -times with its archives in `home` (UNISON=home); extra options appended.
RunResult unison(const std::string& home, const std::string& a, const std::string& b,
                 const std::vector<std::string>& extra = {});
// rsync -a [extra] SRC/ DST/
RunResult rsync(const std::string& src, const std::string& dst, const std::vector<std::string>& extra = {});

// ---- sshd + sshfs ----
// An sshd on 127.0.0.1:<random port> with a generated host key and user key in its own directory, root login by
// that key only, sftp built in. Stopped at destruction.
class Sshd {
 public:
  Sshd();
  ~Sshd();
  const std::string& error() const { return error_; }
  int port() const { return port_; }
  const std::string& key() const { return key_; }
  // A known_hosts file holding the server's key: clients check it strictly and never write one. (Never point
  // UserKnownHostsFile at /dev/null: ssh's host key update replaces the file by a rename, /dev/null included.)
  std::string known_hosts() const { return dir_.path() + "/known_hosts"; }
  std::string log() const { return proc_ ? proc_->log() : ""; }

 private:
  TempDir dir_;
  int port_ = 0;
  std::string key_, error_;
  std::unique_ptr<Child> proc_;
};
// sshfs root@127.0.0.1:remote mnt, in the foreground as our child; unmounted (fusermount3 -u, lazily if busy)
// and killed at destruction. `coherent`: no sshfs caches and no kernel attribute or entry caching, so that a
// second sshfs mount of the same remote dir sees changes at once.
class Sshfs {
 public:
  Sshfs(const Sshd& sshd, const std::string& remote, const std::string& mnt, bool coherent);
  ~Sshfs();
  bool ok() const { return ok_; }
  const std::string& error() const { return error_; }
  std::string unmount();

 private:
  std::string mnt_, error_, log_;
  std::unique_ptr<Child> proc_;
  bool ok_ = false;
};

}  // namespace veilsync
