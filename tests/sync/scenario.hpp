// Two copies of one cipher dir, each mounted by its own veilfs, kept in agreement by a sync tool (a Transport),
// and the four scenarios of issue 12 driven through the plain views:
//   ConflictingEdits  both edit the same files while disconnected, then reconnect
//   ConcurrentMkdir   both create the same directory (and a subdirectory) with different files in it
//   RenameVsAdd       one renames a directory while the other adds a file to it
//   DeleteVsEdit      one deletes what the other edits
// With --shared-storage the mounts stay up while the tool writes into the cipher dirs ("live"), and every check
// polls the plain views (changes must show within a second). Without it (a daemon that predates the option),
// every edit is made on a fresh mount that is unmounted before the tool runs, and each check mounts afresh.
// Every scenario ends the same way: the tool stopped, every copy unmounted, fsck of each, a remount of each
// without --shared-storage, and every name, type, mode and byte of both plain views compared with what the
// scenario observed after its last sync.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>

#include <set>

#include "sync_harness.hpp"

namespace veilsync {

struct Replica {
  explicit Replica(const std::string& name) : vol(name) {}
  VolumeDir vol;
  std::unique_ptr<Mount> mount;
};

class Transport {
 public:
  virtual ~Transport() = default;
  // Called once both cipher dirs exist (A holds a new volume, B is empty).
  virtual std::string start(Replica&, Replica&, const std::string& /*workdir*/) { return ""; }
  // Brings A's volume to B for the first time.
  virtual std::string initial_sync() = 0;
  virtual std::string disconnect() { return ""; }
  // Reconnects and brings both copies to agreement as far as the tool's semantics go.
  virtual std::string sync() = 0;
  virtual void stop() {}
  // Whether both cipher dirs must be identical after sync().
  virtual bool converges() const { return true; }
  // fsck problems that are the tool's own files rather than damage (printed loudly, not failed).
  virtual std::vector<std::regex> tolerated_fsck() const { return {}; }
};

class SyncScenario : public ::testing::Test {
 protected:
  static constexpr const char* kMark = "veilmark";  // in every plain name: the cipher dirs are scanned for it

  void SetUp() override {
    VEILTEST_SKIP_WITHOUT_FUSE();
    live_ = have_shared_storage();
    if (!live_) {
      static bool said = false;
      if (!said)
        print_loud_note(std::string(kSharedStorageFeature) +
                        ": the sync scenarios run with every mount unmounted while the tool syncs (no live checks)");
      said = true;
    }
    work_ = std::make_unique<TempDir>("sync");
    a_ = std::make_unique<Replica>("syncA");
    b_ = std::make_unique<Replica>("syncB");
    ASSERT_NO_ERROR(a_->vol.create());
    t0_ = Clock::now();
  }

  void TearDown() override {
    if (transport_) transport_->stop();
    for (auto* r : {a_.get(), b_.get()})
      if (r) r->mount.reset();
    if (a_)
      std::fprintf(
          stderr, "[veilsync] %s: %lld ms (%s)\n", ::testing::UnitTest::GetInstance()->current_test_info()->name(),
          static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0_).count()),
          live_ ? "live, --shared-storage" : "unmounted while syncing");
  }

  std::vector<std::string> mount_args() const {
    return live_ ? std::vector<std::string>{"--shared-storage"} : std::vector<std::string>{};
  }
  std::string mount(Replica& r, bool shared = true) {
    if (r.mount && r.mount->ok()) return "";
    r.mount = std::make_unique<Mount>(r.vol, shared ? mount_args() : std::vector<std::string>{});
    return r.mount->ok() ? "" : r.mount->error();
  }
  std::string unmount(Replica& r) {
    if (!r.mount) return "";
    std::string e = r.mount->unmount();
    r.mount.reset();
    return e;
  }
  std::string p(Replica& r, const std::string& rel) const { return r.vol.mnt + "/" + rel; }
  Replica& A() { return *a_; }
  Replica& B() { return *b_; }

  // Starts the tool, writes the base content on A (base(A's plain root)), brings it to B.
  void begin(std::unique_ptr<Transport> t, const std::function<void(const std::string&)>& base) {
    transport_ = std::move(t);
    ASSERT_NO_ERROR(transport_->start(A(), B(), work_->path()));
    ASSERT_NO_ERROR(mount(A()));
    base(A().vol.mnt);
    if (!live_) {
      ASSERT_NO_ERROR(unmount(A()));
    }
    ASSERT_NO_ERROR(transport_->initial_sync());
    ASSERT_NO_ERROR(cipher_dirs_equal()) << "after the first sync";
    if (live_) {
      ASSERT_NO_ERROR(mount(B()));
    }
    auto [va, vb] = views([](const Tree& a, const Tree& b) { return a == b; });
    ASSERT_EQ(tree_difference(va, vb), "") << "B's plain view after the first sync";
    base_ = va;
  }

  // Runs edit(A's plain root, B's plain root) while disconnected: on the live mounts, or on fresh mounts that are
  // unmounted afterwards.
  void disconnected_edit(const std::function<void(const std::string&, const std::string&)>& edit) {
    ASSERT_NO_ERROR(transport_->disconnect());
    ASSERT_NO_ERROR(mount(A()));
    ASSERT_NO_ERROR(mount(B()));
    edit(A().vol.mnt, B().vol.mnt);
    if (!live_) {
      ASSERT_NO_ERROR(unmount(A()));
      ASSERT_NO_ERROR(unmount(B()));
    }
  }
  // An edit on one side while connected (follow-ups such as renaming a conflict copy).
  void connected_edit(Replica& r, const std::function<void(const std::string&)>& edit) {
    ASSERT_NO_ERROR(mount(r));
    edit(r.vol.mnt);
    if (!live_) {
      ASSERT_NO_ERROR(unmount(r));
    }
  }

  // Reconnects and syncs; the cipher dirs must then be identical if the tool converges.
  void sync() {
    auto t0 = Clock::now();
    ASSERT_NO_ERROR(transport_->sync());
    auto t1 = Clock::now();
    if (transport_->converges()) {
      ASSERT_NO_ERROR(cipher_dirs_equal()) << "after sync";
    }
    std::fprintf(
        stderr, "[veilsync] sync: %lld ms, then cipher dirs equal after %lld ms\n",
        static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(t1 - t0).count()),
        static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t1).count()));
  }
  // Empty once both cipher dirs hold the same names, types, modes and bytes (polled: a tool may still be
  // renaming its temporary files into place).
  std::string cipher_dirs_equal() {
    Tree ca, cb;
    auto ok = eventually(
        [&] {
          ca = cipher_tree(A());
          cb = cipher_tree(B());
          return ca == cb;
        },
        std::chrono::milliseconds(20000 * kSlowdown));
    return ok ? "" : "the cipher dirs differ:\n" + tree_difference(ca, cb, "A", "B");
  }

  // The plain views of A and B. Live: polled until pred holds (at most 1 s, times kSlowdown, plus the time a
  // listing takes), and the time it took is printed. Otherwise: mounted, listed once, unmounted.
  std::pair<Tree, Tree> views(const std::function<bool(const Tree&, const Tree&)>& pred) {
    Tree va, vb;
    if (!live_) {
      for (auto* r : {&A(), &B()}) {
        EXPECT_NO_ERROR(mount(*r));
        (r == &A() ? va : vb) = snapshot(r->vol.mnt);
        EXPECT_NO_ERROR(unmount(*r));
      }
      return {va, vb};
    }
    auto took = eventually(
        [&] {
          va = snapshot(A().vol.mnt);
          vb = snapshot(B().vol.mnt);
          return pred(va, vb);
        },
        std::chrono::milliseconds(1000 * kSlowdown + 500));
    if (took)
      std::fprintf(stderr, "[veilsync] live views agreed after %lld ms\n", static_cast<long long>(took->count()));
    else
      std::fprintf(stderr, "[veilsync] live views did NOT reach the expected state within %d ms\n",
                   1000 * kSlowdown + 500);
    return {va, vb};
  }
  // Both views, once they are equal; fails the test if they never are.
  Tree converged_view() {
    auto [va, vb] = views([](const Tree& a, const Tree& b) { return a == b; });
    EXPECT_EQ(tree_difference(va, vb), "") << "the plain views of A and B differ";
    return va;
  }

  // The common end: stop the tool, unmount, fsck every copy, remount each without --shared-storage and compare
  // every name and byte with `want_a` / `want_b`; scan the cipher dirs for plaintext.
  void finish(const Tree& want_a, const Tree& want_b) {
    transport_->stop();
    for (auto* r : {&A(), &B()}) {
      const std::string side = r == &A() ? "A" : "B";
      EXPECT_NO_ERROR(unmount(*r));
      auto tolerated = transport_->tolerated_fsck();
      tolerated.insert(tolerated.end(), tolerated_fsck_.begin(), tolerated_fsck_.end());
      EXPECT_NO_ERROR(fsck_damage(r->vol.cipher, r->vol.passfile, tolerated)) << "fsck of " << side;
      EXPECT_NO_ERROR(mount(*r, false));
      if (r->mount && r->mount->ok()) {
        EXPECT_EQ(tree_difference(snapshot(r->vol.mnt), r == &A() ? want_a : want_b, "remounted " + side, "expected"),
                  "")
            << "every name and byte of " << side << " after fsck and a remount";
      }
      EXPECT_NO_ERROR(unmount(*r));
      for (const auto& leak : veiltest::scan_for_plaintext(r->vol.cipher, {kMark, veiltest::kContentMarker}))
        ADD_FAILURE() << side << " cipher dir: " << leak;
    }
  }
  void finish(const Tree& want) { finish(want, want); }

  // Empty, or the veilfs feature that is missing to show the conflict copies (or backups) a tool made in the
  // cipher dirs: a scenario cannot check that no version is lost while they are invisible.
  std::string invisible_copies_feature() {
    for (auto* r : {&A(), &B()})
      for (const auto& [path, n] : cipher_tree(*r)) {
        const std::string name = basename_of(path);
        if (name.find(".sync-conflict-") != std::string::npos && probe_syncthing_conflict().empty())
          return "FEATURE NOT YET IN veilfs: plain names for Syncthing conflict copies "
                 "(ENC.sync-conflict-DATE-TIME-ID, "
                 "veilfs.longname.sync-conflict-DATE-TIME-ID.HASH): the losing versions are INVISIBLE in the plain "
                 "view";
        if (name.find("_was_deleted)") != std::string::npos && probe_unison_deleted_conflict().empty())
          return "FEATURE NOT YET IN veilfs: plain names for unison's conflict copies kept against a deletion "
                 "('ENC (conflict_on_DATE_was_deleted)', files and directories): they are INVISIBLE in the plain view";
        if (name.find(" (conflict") != std::string::npos && probe_unison_conflict().empty())
          return "FEATURE NOT YET IN veilfs: plain names for unison -copyonconflict copies ('ENC (conflict_on_DATE)', "
                 "'veilfs.longname (conflict_on_DATE).HASH'): the losing versions are INVISIBLE in the plain view";
        if (!name.empty() && name.back() == '~' && probe_rsync_backup().empty())
          return "FEATURE NOT YET IN veilfs: plain names for rsync --backup copies ('ENC~', 'veilfs.longname.HASH~'): "
                 "the older versions rsync kept are INVISIBLE in the plain view";
      }
    return "";
  }

  // The cipher dir as the tool syncs it: without Syncthing's folder marker and the temporary files Syncthing keeps
  // after an interrupted pull, to resume it (removed after keepTemporariesH, 24 h by default).
  static bool syncthing_scratch(const std::string& n) {
    return n == ".stfolder" || (n.rfind(".syncthing.", 0) == 0 && n.size() > 4 && n.substr(n.size() - 4) == ".tmp");
  }
  static Tree cipher_tree(Replica& r) { return snapshot(r.vol.cipher, syncthing_scratch); }
  // Cipher names (anywhere in a tree) containing s.
  static std::vector<std::string> cipher_names_with(Replica& r, const std::string& s) {
    std::vector<std::string> out;
    for (const auto& [path, n] : cipher_tree(r))
      if (basename_of(path).find(s) != std::string::npos) out.push_back(path);
    return out;
  }

  // Distinct contents for version `tag` of a file: sizes differ from version to version, so that tools that
  // compare size and mtime (unison's fast check, rsync's quick check) always see the change.
  static std::string version(const std::string& tag, size_t size) {
    std::string head = std::string(veiltest::kContentMarker) + " version " + tag + "\n";
    return head + veiltest::marker_content(size, std::hash<std::string>{}(tag));
  }
  static void set_mtime(const std::string& path, time_t t) {
    struct timespec ts[2] = {{t, 0}, {t, 0}};
    ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), ts, AT_SYMLINK_NOFOLLOW), 0)
        << path << ": " << veiltest::err_name(errno);
  }

  std::vector<std::regex> tolerated_fsck_;  // the scenario's own, added to the tool's
  bool live_ = false;
  std::unique_ptr<TempDir> work_;
  std::unique_ptr<Replica> a_, b_;
  std::unique_ptr<Transport> transport_;
  Tree base_;
  Clock::time_point t0_;
};

#define VEILSYNC_SKIP_IF_COPIES_INVISIBLE()                                                                           \
  do {                                                                                                                \
    if (const std::string veilsync_f_ = invisible_copies_feature(); !veilsync_f_.empty()) VEILSYNC_SKIP(veilsync_f_); \
  } while (0)

// ---- the scenarios' plain names and contents ----
namespace scenario {
inline const std::string kReport = "veilmark-report.txt";
inline const std::string kNoExt = "veilmark-notes";
// 170 bytes + ".txt": encrypted, longer than 255 characters, so stored as veilfs.longname.HASH (docs/FORMAT.md 8.2).
inline const std::string kLongStem = "veilmark-" + std::string(161, 'L');
inline const std::string kLong = kLongStem + ".txt";
// The conflicting files: name, stem, extension.
struct Conflicted {
  std::string name, stem, ext;
};
inline const std::vector<Conflicted> kConflicted{
    {kReport, "veilmark-report", ".txt"}, {kNoExt, "veilmark-notes", ""}, {kLong, kLongStem, ".txt"}};

inline const std::string kDir = "veilmark-dir";
inline const std::string kProj = "veilmark-proj";
inline const std::string kProjRenamed = "veilmark-proj-renamed";
inline const std::string kDoc = "veilmark-doc.txt";
}  // namespace scenario

}  // namespace veilsync
