// The scenarios of scenario.hpp with Syncthing (continuous, two instances on 127.0.0.1), unison (one batch run
// per sync, as people script it) and rsync both ways (A to B, then B to A, with --update).
#include <sys/stat.h>
#include <unistd.h>

#include "scenario.hpp"

namespace veilsync {
namespace {

using veiltest::write_file;
namespace sc = scenario;

// ---- the tools ----

class SyncthingTransport : public Transport {
 public:
  std::string start(Replica& a, Replica& b, const std::string& work) override {
    try {
      st_ = std::make_unique<Syncthing>(work, std::vector<std::string>{a.vol.cipher, b.vol.cipher});
    } catch (const std::exception& e) {
      return e.what();
    }
    return st_->start();
  }
  std::string initial_sync() override { return st_->wait_in_sync(std::chrono::seconds(90 * kSlowdown)); }
  std::string disconnect() override {
    if (auto e = st_->wait_in_sync(std::chrono::seconds(90 * kSlowdown)); !e.empty()) return e;
    return st_->disconnect();
  }
  std::string sync() override {
    auto t0 = Clock::now();
    if (auto e = st_->reconnect(); !e.empty()) return e;
    auto t1 = Clock::now();
    auto e = st_->wait_in_sync(std::chrono::seconds(90 * kSlowdown));
    std::fprintf(
        stderr, "[veilsync] syncthing: reconnected in %lld ms, in sync %lld ms later\n",
        static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(t1 - t0).count()),
        static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t1).count()));
    return e;
  }
  void stop() override {
    if (st_) st_->stop();
  }
  // Syncthing's folder marker in the cipher dir's root (FINDING: fsck reports it as a foreign entry).
  // and the temporary files it keeps after an interrupted pull (FINDING: both reported as foreign entries).
  std::vector<std::regex> tolerated_fsck() const override {
    return {std::regex("^foreign-entry /\\.stfolder:"),
            std::regex("^foreign-entry /(.*/)?\\.syncthing\\.[^/]*\\.tmp:")};
  }
  std::string short_id(size_t i) const { return st_->short_id(i); }

 private:
  std::unique_ptr<Syncthing> st_;
};

class UnisonTransport : public Transport {
 public:
  explicit UnisonTransport(std::vector<std::string> flags) : flags_(std::move(flags)) {}
  std::string start(Replica& a, Replica& b, const std::string& work) override {
    a_ = a.vol.cipher;
    b_ = b.vol.cipher;
    home_ = work + "/unison";
    ::mkdir(home_.c_str(), 0700);
    return "";
  }
  std::string initial_sync() override { return run_once({}); }
  // One run; a second one when conflict copies were made (they are new files on one side only).
  std::string sync() override {
    if (auto e = run_once(flags_); !e.empty()) return e;
    if (std::find(flags_.begin(), flags_.end(), "-copyonconflict") != flags_.end()) return run_once(flags_);
    return "";
  }
  // Without -prefer, conflicts are skipped: the copies then differ.
  bool converges() const override { return std::find(flags_.begin(), flags_.end(), "-prefer") != flags_.end(); }
  const std::string& last_output() const { return all_output_; }
  int last_status() const { return status_; }

 private:
  std::string run_once(const std::vector<std::string>& flags) {
    auto r = unison(home_, a_, b_, flags);
    status_ = r.status;
    all_output_ += r.output;
    // 0: all done; 1: something skipped (a conflict, in these tests); 2 and 3: failures.
    if (r.status != 0 && r.status != 1) return "unison exited " + std::to_string(r.status) + ":\n" + r.output;
    return "";
  }
  std::vector<std::string> flags_;
  std::string a_, b_, home_, all_output_;
  int status_ = -1;
};

class RsyncTransport : public Transport {
 public:
  explicit RsyncTransport(std::vector<std::string> flags, int rounds = 1) : flags_(std::move(flags)), rounds_(rounds) {}
  std::string start(Replica& a, Replica& b, const std::string&) override {
    a_ = a.vol.cipher;
    b_ = b.vol.cipher;
    return "";
  }
  std::string initial_sync() override { return once(a_, b_, {}); }
  std::string sync() override {
    for (int i = 0; i < rounds_; ++i) {
      if (auto e = once(a_, b_, flags_); !e.empty()) return e;
      if (auto e = once(b_, a_, flags_); !e.empty()) return e;
    }
    return "";
  }

 private:
  static std::string once(const std::string& s, const std::string& d, const std::vector<std::string>& f) {
    auto r = rsync(s, d, f);
    return r.status == 0 ? "" : "rsync " + s + " -> " + d + " exited " + std::to_string(r.status) + ":\n" + r.output;
  }
  std::vector<std::string> flags_;
  std::string a_, b_;
  int rounds_;
};

enum class Tool { Syncthing, Unison, UnisonCopy, Rsync, RsyncBackup };

const char* tool_name(Tool t) {
  switch (t) {
    case Tool::Syncthing:
      return "Syncthing";
    case Tool::Unison:
      return "unison -batch -auto";
    case Tool::UnisonCopy:
      return "unison -batch -auto -prefer newer -copyonconflict";
    case Tool::Rsync:
      return "rsync -a -u both ways";
    case Tool::RsyncBackup:
      return "rsync -a -u --backup both ways";
  }
  return "?";
}

std::string regex_quote(const std::string& s) {
  static const std::regex special(R"([.^$|()\[\]{}*+?\\])");
  return std::regex_replace(s, special, R"(\$&)");
}

class Tools : public SyncScenario {
 protected:
  std::unique_ptr<Transport> make(Tool t) {
    tool_ = t;
    switch (t) {
      case Tool::Syncthing:
        return std::make_unique<SyncthingTransport>();
      case Tool::Unison:
        return std::make_unique<UnisonTransport>(std::vector<std::string>{});
      case Tool::UnisonCopy:
        return std::make_unique<UnisonTransport>(std::vector<std::string>{"-prefer", "newer", "-copyonconflict"});
      case Tool::Rsync:
        return std::make_unique<RsyncTransport>(std::vector<std::string>{"-u"});
      case Tool::RsyncBackup:
        return std::make_unique<RsyncTransport>(std::vector<std::string>{"-u", "--backup"}, 2);
    }
    return nullptr;
  }
  std::string needs(Tool t) {
    switch (t) {
      case Tool::Syncthing:
        return missing_program({"syncthing"});
      case Tool::Unison:
      case Tool::UnisonCopy:
        return missing_program({"unison"});
      default:
        return missing_program({"rsync"});
    }
  }

  // The plain name each tool's conflict copy of `c` must have (a regex), and the feature that makes it visible.
  std::string conflict_regex(const sc::Conflicted& c) {
    switch (tool_) {
      case Tool::Syncthing:
        // The losing version is A's (older mtime): Syncthing names the copy after the device that modified it.
        // The 7 characters name a device of the two (seen: the one whose change won, file.ModifiedBy in
        // folder_sendrecv.go's handleFile).
        return regex_quote(c.stem) + R"(\.sync-conflict-\d{8}-\d{6}-()" +
               static_cast<SyncthingTransport&>(*transport_).short_id(0) + "|" +
               static_cast<SyncthingTransport&>(*transport_).short_id(1) + ")" + regex_quote(c.ext);
      case Tool::UnisonCopy:
        return regex_quote(c.stem) + R"( \(conflict_on_\d{4}-\d{2}-\d{2}\))" + regex_quote(c.ext);
      default:
        return "";
    }
  }

  // ---- scenario 1: both edit the same files while disconnected ----
  void conflicting_edits(Tool t) {
    if (auto why = needs(t); !why.empty()) VEILSYNC_SKIP(why);
    std::map<std::string, std::string> va, vb;
    for (size_t i = 0; i < sc::kConflicted.size(); ++i) {
      va[sc::kConflicted[i].name] = version("A-" + sc::kConflicted[i].name, 5000 + 7 * i);
      vb[sc::kConflicted[i].name] = version("B-" + sc::kConflicted[i].name, 9000 + 11 * i);
    }
    ASSERT_NO_FATAL_FAILURE(begin(make(t), [&](const std::string& root) {
      for (const auto& c : sc::kConflicted) write_file(root + "/" + c.name, version("base-" + c.name, 3000));
    }));
    // A's edit is older than B's: every tool that picks a winner picks B's.
    const time_t now = ::time(nullptr);
    ASSERT_NO_FATAL_FAILURE(disconnected_edit([&](const std::string& ra, const std::string& rb) {
      for (const auto& c : sc::kConflicted) {
        write_file(ra + "/" + c.name, va[c.name]);
        set_mtime(ra + "/" + c.name, now - 120);
        write_file(rb + "/" + c.name, vb[c.name]);
        set_mtime(rb + "/" + c.name, now - 60);
      }
    }));
    ASSERT_NO_FATAL_FAILURE(sync());

    // What the tool did in the cipher dirs, whatever veilfs shows of it.
    const char* marker = t == Tool::Syncthing ? ".sync-conflict-" : t == Tool::UnisonCopy ? " (conflict_on_" : "~";
    size_t copies = cipher_names_with(A(), marker).size();
    for (const auto& n : cipher_names_with(A(), marker))
      std::fprintf(stderr, "[veilsync] backing copy: %s\n", n.c_str());
    std::fprintf(stderr, "[veilsync] %s: %zu backing conflict copies ('%s') in A's cipher dir\n", tool_name(t), copies,
                 marker);

    if (t == Tool::Unison) {
      // Default unison: conflicting changes are skipped; each side keeps its own version, none is lost.
      auto& u = static_cast<UnisonTransport&>(*transport_);
      EXPECT_EQ(u.last_status(), 1) << u.last_output();
      EXPECT_NE(u.last_output().find("skipped"), std::string::npos) << u.last_output();
      EXPECT_EQ(copies, 0u);
      auto [wa, wb] = views([&](const Tree& a, const Tree& b) {
        for (const auto& c : sc::kConflicted)
          if (!a.count(c.name) || a.at(c.name).data != va[c.name] || !b.count(c.name) ||
              b.at(c.name).data != vb[c.name])
            return false;
        return true;
      });
      for (const auto& c : sc::kConflicted) {
        EXPECT_EQ(wa[c.name].data, va[c.name]) << "A keeps its own version of " << c.name;
        EXPECT_EQ(wb[c.name].data, vb[c.name]) << "B keeps its own version of " << c.name;
      }
      EXPECT_EQ(wa.size(), base_.size());
      EXPECT_EQ(wb.size(), base_.size());
      finish(wa, wb);
      return;
    }
    if (t == Tool::Rsync) {
      // rsync -u: the newer file overwrites the older; A's version is lost by the tool itself (its semantics).
      EXPECT_EQ(copies, 0u);
      Tree v = converged_view();
      for (const auto& c : sc::kConflicted) {
        EXPECT_EQ(v[c.name].data, vb[c.name]) << c.name << ": the newer version wins";
        EXPECT_TRUE(holding(v, va[c.name]).empty()) << "rsync -u keeps no copy of the older version";
      }
      EXPECT_EQ(v.size(), base_.size());
      std::fprintf(stderr,
                   "[veilsync] rsync -u both ways: the older edit (A's) of each file is overwritten by the "
                   "tool, as rsync documents; no copy is made\n");
      finish(v);
      return;
    }
    EXPECT_EQ(copies, sc::kConflicted.size()) << "one conflict copy per file in the cipher dir";
    VEILSYNC_SKIP_IF_COPIES_INVISIBLE();
    if (t == Tool::RsyncBackup) {
      Tree v = converged_view();
      for (const auto& c : sc::kConflicted) {
        EXPECT_EQ(v[c.name].data, vb[c.name]) << c.name;
        auto where = holding(v, va[c.name]);
        EXPECT_EQ(where.size(), 1u) << "A's version of " << c.name << " (rsync's backup) must be visible";
        for (const auto& w : where)
          std::fprintf(stderr, "[veilsync] rsync backup of %s shown as %s\n", c.name.c_str(), w.c_str());
      }
      finish(v);
      return;
    }
    // Syncthing, unison -copyonconflict: the newer version under the name, the older one as a conflict copy.
    auto expected = [&](const Tree& v, std::string* why) {
      for (const auto& c : sc::kConflicted) {
        auto it = v.find(c.name);
        if (it == v.end() || it->second.data != vb[c.name]) return *why = c.name + " does not hold B's version", false;
        auto m = matching(v, std::regex(conflict_regex(c)));
        if (m.size() != 1) return *why = std::to_string(m.size()) + " conflict copies of " + c.name, false;
        if (v.at(m[0]).data != va[c.name]) return *why = m[0] + " does not hold A's version", false;
      }
      if (v.size() != base_.size() + sc::kConflicted.size()) return *why = "unexpected entries", false;
      return true;
    };
    std::string why;
    auto [wa, wb] = views([&](const Tree& a, const Tree& b) { return a == b && expected(a, &why); });
    EXPECT_EQ(tree_difference(wa, wb), "");
    EXPECT_TRUE(expected(wa, &why)) << why << "; A's view:\n" << tree_difference(wa, {}, "A", "-", 40);
    for (const auto& [path, n] : wa)
      if (path.find("conflict") != std::string::npos)
        std::fprintf(stderr, "[veilsync] conflict copy: %s\n", path.c_str());
    if (HasFailure()) return finish(wa, wb);
    if (t == Tool::Syncthing)
      std::fprintf(stderr, "[veilsync] device A is %s, B is %s\n",
                   static_cast<SyncthingTransport&>(*transport_).short_id(0).c_str(),
                   static_cast<SyncthingTransport&>(*transport_).short_id(1).c_str());
    for (auto* r : {&A(), &B()}) {
      auto f = run_fsck_now(*r);
      size_t notices = 0;
      for (const auto& line : f.problems) notices += line.rfind("conflict-copy /", 0) == 0;
      EXPECT_EQ(notices, sc::kConflicted.size()) << "fsck must report each conflict copy as such:\n" << f.output;
      EXPECT_NO_ERROR(fsck_damage(r->vol.cipher, r->vol.passfile, transport_->tolerated_fsck()))
          << "conflict copies are not damage";
    }
    // Resolve: rename each copy to an ordinary name on A, then delete those on B.
    ASSERT_NO_FATAL_FAILURE(connected_edit(A(), [&](const std::string& root) {
      for (const auto& c : sc::kConflicted) {
        auto m = matching(snapshot(root), std::regex(conflict_regex(c)));
        ASSERT_EQ(m.size(), 1u);
        ASSERT_EQ(::rename((root + "/" + m[0]).c_str(), (root + "/" + c.stem + "-resolved" + c.ext).c_str()), 0)
            << m[0] << ": " << veiltest::err_name(errno);
      }
    }));
    ASSERT_NO_FATAL_FAILURE(sync());
    Tree v = converged_view();
    for (const auto& c : sc::kConflicted) {
      EXPECT_EQ(v[c.stem + "-resolved" + c.ext].data, va[c.name]);
      EXPECT_TRUE(matching(v, std::regex(conflict_regex(c))).empty());
    }
    ASSERT_NO_FATAL_FAILURE(connected_edit(B(), [&](const std::string& root) {
      for (const auto& c : sc::kConflicted)
        EXPECT_EQ(::unlink((root + "/" + c.stem + "-resolved" + c.ext).c_str()), 0) << veiltest::err_name(errno);
    }));
    ASSERT_NO_FATAL_FAILURE(sync());
    v = converged_view();
    EXPECT_EQ(v.size(), base_.size());
    for (const auto& c : sc::kConflicted) EXPECT_EQ(v[c.name].data, vb[c.name]);
    EXPECT_EQ(cipher_names_with(A(), marker).size(), 0u) << "no backing conflict copy is left";
    finish(v);
  }

  FsckOutcome run_fsck_now(Replica& r) { return run_fsck(r.vol.cipher, r.vol.passfile); }

  // ---- scenario 2: both create the same directory ----
  void concurrent_mkdir(Tool t) {
    if (auto why = needs(t); !why.empty()) VEILSYNC_SKIP(why);
    ASSERT_NO_FATAL_FAILURE(
        begin(make(t), [&](const std::string& root) { write_file(root + "/" + sc::kReport, version("base", 1000)); }));
    const std::string d = sc::kDir;
    ASSERT_NO_FATAL_FAILURE(disconnected_edit([&](const std::string& ra, const std::string& rb) {
      for (const auto& [root, side] : {std::pair{ra, std::string("a")}, std::pair{rb, std::string("b")}}) {
        ASSERT_EQ(::mkdir((root + "/" + d).c_str(), 0755), 0) << veiltest::err_name(errno);
        ASSERT_EQ(::mkdir((root + "/" + d + "/sub").c_str(), 0755), 0) << veiltest::err_name(errno);
        write_file(root + "/" + d + "/from-" + side + ".txt", version("mkdir-" + side, 2000 + side[0]));
        write_file(root + "/" + d + "/sub/" + side + ".txt", version("mkdir-sub-" + side, 1500 + side[0]));
      }
    }));
    ASSERT_NO_FATAL_FAILURE(sync());
    for (const auto& m : {".sync-conflict-", "(conflict", "~"})
      EXPECT_TRUE(cipher_names_with(A(), m).empty() && cipher_names_with(B(), m).empty())
          << "the same directory made on both sides is no conflict (its IV file is derived, equal on both): " << m;
    Tree want = base_;
    want[d] = Node{'d', 0755, ""};
    want[d + "/sub"] = Node{'d', 0755, ""};
    for (std::string side : {"a", "b"}) {
      want[d + "/from-" + side + ".txt"] = Node{'f', 0644, version("mkdir-" + side, 2000 + side[0])};
      want[d + "/sub/" + side + ".txt"] = Node{'f', 0644, version("mkdir-sub-" + side, 1500 + side[0])};
    }
    auto [wa, wb] = views([&](const Tree& a, const Tree& b) { return a == want && b == want; });
    EXPECT_EQ(tree_difference(wa, want, "A", "expected"), "");
    EXPECT_EQ(tree_difference(wb, want, "B", "expected"), "");
    finish(want);
  }

  // ---- scenario 3: one renames a directory, the other adds a file to it ----
  void rename_vs_add(Tool t) {
    if (auto why = needs(t); !why.empty()) VEILSYNC_SKIP(why);
    const std::string one = version("proj-one", 1200), two = version("proj-two", 2300),
                      three = version("proj-three", 3400);
    ASSERT_NO_FATAL_FAILURE(begin(make(t), [&](const std::string& root) {
      ASSERT_EQ(::mkdir((root + "/" + sc::kProj).c_str(), 0755), 0);
      write_file(root + "/" + sc::kProj + "/one.txt", one);
      write_file(root + "/" + sc::kProj + "/two.txt", two);
    }));
    ASSERT_NO_FATAL_FAILURE(disconnected_edit([&](const std::string& ra, const std::string& rb) {
      ASSERT_EQ(::rename((ra + "/" + sc::kProj).c_str(), (ra + "/" + sc::kProjRenamed).c_str()), 0);
      write_file(rb + "/" + sc::kProj + "/three.txt", three);
    }));
    ASSERT_NO_FATAL_FAILURE(sync());
    VEILSYNC_SKIP_IF_COPIES_INVISIBLE();
    // Syncthing deletes the old directory's IV file with the rename but keeps the directory for the file added to
    // it; the mount derives the IV (the directory never moved), fsck reports the missing file (FINDING).
    tolerated_fsck_.emplace_back("^dir-iv-missing /" + sc::kProj + ":");
    auto no_loss = [&](const Tree& v) {
      return !holding(v, one).empty() && !holding(v, two).empty() && !holding(v, three).empty();
    };
    auto [wa, wb] = views(
        [&](const Tree& a, const Tree& b) { return no_loss(a) && no_loss(b) && (!transport_->converges() || a == b); });
    for (const auto& [side, v] : {std::pair{"A", &wa}, std::pair{"B", &wb}}) {
      EXPECT_TRUE(no_loss(*v)) << side << " lost a file; its view:\n" << tree_difference(*v, {}, side, "-", 40);
      std::string where;
      for (const auto& [path, n] : *v) where += " " + path;
      std::fprintf(stderr, "[veilsync] %s, rename vs add, %s holds:%s\n", tool_name(t), side, where.c_str());
    }
    if (transport_->converges()) {
      EXPECT_EQ(tree_difference(wa, wb), "");
    }
    finish(wa, wb);
  }

  // ---- scenario 4: one deletes what the other edits ----
  void delete_vs_edit(Tool t) {
    if (auto why = needs(t); !why.empty()) VEILSYNC_SKIP(why);
    const std::string edited = version("doc-edited-by-B", 4321);
    ASSERT_NO_FATAL_FAILURE(
        begin(make(t), [&](const std::string& root) { write_file(root + "/" + sc::kDoc, version("doc-base", 1234)); }));
    ASSERT_NO_FATAL_FAILURE(disconnected_edit([&](const std::string& ra, const std::string& rb) {
      ASSERT_EQ(::unlink((ra + "/" + sc::kDoc).c_str()), 0);
      write_file(rb + "/" + sc::kDoc, edited);
    }));
    ASSERT_NO_FATAL_FAILURE(sync());
    VEILSYNC_SKIP_IF_COPIES_INVISIBLE();
    auto [wa, wb] = views([&](const Tree& a, const Tree& b) {
      return !holding(b, edited).empty() && (!transport_->converges() || (a == b && !holding(a, edited).empty()));
    });
    for (const auto& [side, v] : {std::pair{"A", &wa}, std::pair{"B", &wb}}) {
      std::string where;
      for (const auto& [path, n] : *v) where += " " + path + (n.data == edited ? "(edited)" : "");
      std::fprintf(stderr, "[veilsync] %s, delete vs edit, %s holds:%s\n", tool_name(t), side, where.c_str());
    }
    // The edit is never lost: the editor keeps it, and a tool that converges brings it back to the deleter.
    EXPECT_EQ(holding(wb, edited).size(), 1u) << "B's edit";
    if (t == Tool::UnisonCopy) {
      // -prefer newer lets the deletion win; -copyonconflict keeps the edit as "NAME (conflict_on_DATE_was_deleted)".
      EXPECT_EQ(tree_difference(wa, wb), "");
      auto where = holding(wa, edited);
      ASSERT_EQ(where.size(), 1u);
      EXPECT_TRUE(
          std::regex_match(where[0], std::regex(R"(veilmark-doc \(conflict_on_\d{4}-\d{2}-\d{2}_was_deleted\)\.txt)")))
          << where[0];
    } else if (transport_->converges()) {
      EXPECT_EQ(tree_difference(wa, wb), "");
      EXPECT_EQ(wa[sc::kDoc].data, edited) << "the edit wins over the deletion";
    } else {
      EXPECT_EQ(wa.count(sc::kDoc), 0u) << "unison without -prefer skips the conflict: A keeps its deletion";
    }
    finish(wa, wb);
  }

  Tool tool_ = Tool::Syncthing;
};

#define VEILSYNC_TOOL_TESTS(Group, tool)                                     \
  TEST_F(Tools, Group##_ConflictingEdits) { conflicting_edits(Tool::tool); } \
  TEST_F(Tools, Group##_ConcurrentMkdir) { concurrent_mkdir(Tool::tool); }   \
  TEST_F(Tools, Group##_RenameDirWhileAdding) { rename_vs_add(Tool::tool); } \
  TEST_F(Tools, Group##_DeleteWhatTheOtherEdits) { delete_vs_edit(Tool::tool); }

VEILSYNC_TOOL_TESTS(Syncthing, Syncthing)
VEILSYNC_TOOL_TESTS(UnisonCopyOnConflict, UnisonCopy)
VEILSYNC_TOOL_TESTS(Rsync, Rsync)
TEST_F(Tools, Unison_ConflictingEdits) { conflicting_edits(Tool::Unison); }
TEST_F(Tools, Unison_DeleteWhatTheOtherEdits) { delete_vs_edit(Tool::Unison); }
TEST_F(Tools, RsyncBackup_ConflictingEdits) { conflicting_edits(Tool::RsyncBackup); }

}  // namespace
}  // namespace veilsync
