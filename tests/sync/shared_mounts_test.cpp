// Two veilfs mounts of one cipher dir, both with --shared-storage, each running a seeded random workload of
// creates, writes, appends, truncates, renames, mkdir/rmdir and deletes in its own subtree and in a shared one.
// Rounds: in each round both workers run at once; in the shared subtree a worker touches only the entries that
// the round assigns to it (a hash of the path and the round), so the files one mount wrote are edited, renamed and
// deleted by the other in later rounds, and the model stays exact. After each round (a quiet point) both mounts
// must show the whole model — what the other wrote included — within the coherence limit (1 s).
// At the end: both unmounted, fsck, a remount without --shared-storage, and every name and byte checked.
// VEILFS_SHARED_SEED replays a run (the seed used is printed).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <random>
#include <set>
#include <thread>

#include "sync_harness.hpp"

namespace veilsync {
namespace {

using veiltest::err_name;

struct Model {
  std::map<std::string, std::string> files;  // relative path -> content
  std::set<std::string> dirs;                // relative paths ("" is the root, not listed)
  Tree tree() const {
    Tree t;
    for (const auto& d : dirs) t[d] = Node{'d', 0755, ""};
    for (const auto& [p, c] : files) t[p] = Node{'f', 0644, c};
    return t;
  }
};

std::string parent_of(const std::string& p) {
  auto s = p.rfind('/');
  return s == std::string::npos ? "" : p.substr(0, s);
}

// One worker's round: ops on its own mount, recorded against its own copy of the model.
class Worker {
 public:
  Worker(int id, const std::string& mnt, uint64_t seed) : id_(id), mnt_(mnt), rng_(seed) {}

  // Who may touch a shared path in round r.
  static int owner(const std::string& path, int round) {
    return static_cast<int>(std::hash<std::string>{}(path + "#" + std::to_string(round)) % 2);
  }

  void round(Model& m, int r, int ops) {
    round_ = r;
    for (int i = 0; i < ops && errors_.empty(); ++i) step(m, i);
  }
  const std::vector<std::string>& errors() const { return errors_; }
  // Paths of the model this worker changed in its last round (created, changed or removed).
  std::set<std::string> touched;

 private:
  bool mine(const std::string& path) const {
    const std::string own = "own" + std::to_string(id_);
    if (path == own || path.rfind(own + "/", 0) == 0) return true;
    return path.rfind("shared/", 0) == 0 && owner(path, round_) == id_;
  }
  // Directories in which this worker may create entries this round.
  std::vector<std::string> dirs_for_create(const Model& m) const {
    std::vector<std::string> out{"own" + std::to_string(id_), "shared"};
    for (const auto& d : m.dirs)
      if (mine(d)) out.push_back(d);
    return out;
  }
  std::vector<std::string> my_files(const Model& m) const {
    std::vector<std::string> out;
    for (const auto& [p, c] : m.files)
      if (mine(p)) out.push_back(p);
    return out;
  }
  template <class C>
  const auto& pick(const C& c) {
    return c[std::uniform_int_distribution<size_t>(0, c.size() - 1)(rng_)];
  }
  size_t num(size_t lo, size_t hi) { return std::uniform_int_distribution<size_t>(lo, hi)(rng_); }
  std::string fresh(const std::string& dir, const char* kind) {
    return dir + "/veilmark-w" + std::to_string(id_) + "-r" + std::to_string(round_) + "-" + kind +
           std::to_string(counter_++);
  }
  std::string content(size_t n) { return veiltest::marker_content(n, rng_()); }
  void fail(const std::string& what) { errors_.push_back("worker " + std::to_string(id_) + ": " + what); }
  std::string abs(const std::string& rel) const { return mnt_ + "/" + rel; }

  void step(Model& m, int i) {
    auto files = my_files(m);
    int op = static_cast<int>(num(0, 99));
    if (files.empty() || op < 18) return create(m);
    const std::string f = pick(files);
    std::string& c = m.files[f];
    touched.insert(f);
    if (op < 36) {  // pwrite somewhere, possibly past the end (a hole)
      size_t off = num(0, c.size() + 5000), len = num(1, 9000);
      std::string d = content(len);
      UniqueFd fd(::open(abs(f).c_str(), O_WRONLY | O_CLOEXEC));
      if (!fd) return fail("open " + f + ": " + err_name(errno));
      try {
        veiltest::write_fd_at(fd.get(), off, d);
      } catch (const std::exception& e) {
        return fail(f + ": " + e.what());
      }
      if (c.size() < off) c.resize(off, '\0');
      c.replace(off, std::min(len, c.size() - off), d);
    } else if (op < 50) {  // append
      std::string d = content(num(1, 6000));
      UniqueFd fd(::open(abs(f).c_str(), O_WRONLY | O_APPEND | O_CLOEXEC));
      if (!fd || ::write(fd.get(), d.data(), d.size()) != static_cast<ssize_t>(d.size()))
        return fail("append " + f + ": " + err_name(errno));
      c += d;
    } else if (op < 62) {  // truncate, shorter or longer
      size_t n = num(0, c.size() + 9000);
      if (::truncate(abs(f).c_str(), static_cast<off_t>(n)) != 0) return fail("truncate " + f + ": " + err_name(errno));
      c.resize(n, '\0');
    } else if (op < 74) {  // rename to a fresh name, or over another file of ours
      auto dirs = dirs_for_create(m);
      std::string to = (num(0, 3) == 0 && files.size() > 1) ? pick(files) : fresh(pick(dirs), "f");
      if (to == f) return;
      if (::rename(abs(f).c_str(), abs(to).c_str()) != 0)
        return fail("rename " + f + " " + to + ": " + err_name(errno));
      std::string moved = std::move(c);
      m.files.erase(f);
      m.files[to] = std::move(moved);
      touched.insert(to);
    } else if (op < 84) {  // delete
      if (::unlink(abs(f).c_str()) != 0) return fail("unlink " + f + ": " + err_name(errno));
      m.files.erase(f);
    } else if (op < 90) {  // mkdir
      std::string d = fresh(pick(dirs_for_create(m)), "d");
      if (::mkdir(abs(d).c_str(), 0755) != 0) return fail("mkdir " + d + ": " + err_name(errno));
      m.dirs.insert(d);
      touched.insert(d);
    } else if (op < 95) {  // rmdir an empty directory of ours
      for (const auto& d : m.dirs) {
        if (!mine(d) || d == "own" + std::to_string(id_)) continue;
        bool empty = true;
        for (const auto& [p, x] : m.files) empty = empty && parent_of(p) != d;
        for (const auto& o : m.dirs) empty = empty && parent_of(o) != d;
        if (!empty) continue;
        if (::rmdir(abs(d).c_str()) != 0) return fail("rmdir " + d + ": " + err_name(errno));
        touched.insert(d);
        m.dirs.erase(d);
        return;
      }
    } else {  // rename a directory of our own subtree (with everything in it)
      std::vector<std::string> own;
      for (const auto& d : m.dirs)
        if (d.rfind("own" + std::to_string(id_) + "/", 0) == 0) own.push_back(d);
      if (own.empty()) return;
      std::string d = pick(own), to = fresh("own" + std::to_string(id_), "D");
      if (::rename(abs(d).c_str(), abs(to).c_str()) != 0) return fail("rename dir " + d + ": " + err_name(errno));
      auto moved = [&](const std::string& p) { return p == d || p.rfind(d + "/", 0) == 0; };
      std::map<std::string, std::string> nf;
      for (auto it = m.files.begin(); it != m.files.end();) {
        if (moved(it->first)) {
          nf[to + it->first.substr(d.size())] = std::move(it->second);
          touched.insert(it->first);
          it = m.files.erase(it);
        } else {
          ++it;
        }
      }
      std::set<std::string> nd;
      for (auto it = m.dirs.begin(); it != m.dirs.end();) {
        if (moved(*it)) {
          nd.insert(to + it->substr(d.size()));
          touched.insert(*it);
          it = m.dirs.erase(it);
        } else {
          ++it;
        }
      }
      for (auto& [p, c2] : nf) touched.insert(p), m.files[p] = std::move(c2);
      for (auto& p : nd) touched.insert(p), m.dirs.insert(p);
    }
    (void)i;
  }

  void create(Model& m) {
    std::string f = fresh(pick(dirs_for_create(m)), "f");
    std::string c = content(num(0, 20000));
    try {
      veiltest::write_file(abs(f), c);
    } catch (const std::exception& e) {
      return fail(e.what());
    }
    m.files[f] = c;
    touched.insert(f);
  }

  int id_;
  std::string mnt_;
  std::mt19937_64 rng_;
  int round_ = 0;
  int counter_ = 0;
  std::vector<std::string> errors_;
};

TEST(SharedMounts, TwoMountsRandomWorkloadsSeeEachOther) {
  VEILTEST_SKIP_WITHOUT_FUSE();
  // VEILFS_SHARED_SELFTEST=1: both workers on one mount (no --shared-storage needed), to check the test itself.
  const bool selftest = ::getenv("VEILFS_SHARED_SELFTEST") != nullptr;
  if (!selftest && !have_shared_storage()) VEILSYNC_SKIP(kSharedStorageFeature);
  uint64_t seed = std::random_device{}();
  if (const char* s = ::getenv("VEILFS_SHARED_SEED")) seed = std::strtoull(s, nullptr, 0);
  std::fprintf(stderr, "[veilsync] SharedMounts seed: VEILFS_SHARED_SEED=%llu\n",
               static_cast<unsigned long long>(seed));
  const int kRounds = 8, kOps = 40;
  const auto kCoherence = std::chrono::milliseconds(1000 * kSlowdown);

  VolumeDir a("sharedA");
  ASSERT_NO_ERROR(a.create());
  // The second mount: same cipher dir and passphrase, its own mountpoint (and log directory).
  VolumeDir b("sharedB");
  b.cipher = a.cipher;
  std::vector<std::string> args;
  if (!selftest) args.push_back("--shared-storage");
  Model model;
  {
    Mount ma(a, args);
    ASSERT_TRUE(ma.ok()) << ma.error();
    std::unique_ptr<Mount> mb;
    if (selftest) {
      b.mnt = a.mnt;
    } else {
      mb = std::make_unique<Mount>(b, args);
      ASSERT_TRUE(mb->ok()) << mb->error();
    }
    for (const char* d : {"own0", "own1", "shared"}) {
      ASSERT_EQ(::mkdir((a.mnt + "/" + d).c_str(), 0755), 0) << err_name(errno);
      model.dirs.insert(d);
    }
    Worker w0(0, a.mnt, seed), w1(1, b.mnt, seed ^ 0x9e3779b97f4a7c15ULL);
    long long worst = 0;
    for (int r = 0;; ++r) {
      // Quiet point before the round: both views equal the model.
      const Tree want = model.tree();
      Tree ta, tb;
      auto took = eventually(
          [&] {
            ta = snapshot(a.mnt);
            tb = snapshot(b.mnt);
            return ta == want && tb == want;
          },
          kCoherence + std::chrono::milliseconds(500));
      ASSERT_TRUE(took) << "round " << r << ": the mounts do not show the model within " << kCoherence.count()
                        << " ms (seed " << seed << ")\nmount A:\n"
                        << tree_difference(ta, want, "A", "model") << "mount B:\n"
                        << tree_difference(tb, want, "B", "model");
      worst = std::max<long long>(worst, took->count());
      if (r == kRounds) break;
      // The round: both at once, each on its own copy of the model.
      Model m0 = model, m1 = model;
      w0.touched.clear();
      w1.touched.clear();
      std::thread t0([&] { w0.round(m0, r, kOps); });
      std::thread t1([&] { w1.round(m1, r, kOps); });
      t0.join();
      t1.join();
      for (const auto& e : w0.errors()) ADD_FAILURE() << "round " << r << ": " << e;
      for (const auto& e : w1.errors()) ADD_FAILURE() << "round " << r << ": " << e;
      ASSERT_FALSE(HasFailure()) << "seed " << seed;
      // Merge: the two touched sets are disjoint by construction.
      for (const auto* w : {&w0, &w1}) {
        const Model& mw = w == &w0 ? m0 : m1;
        for (const auto& p : w->touched) {
          if (mw.files.count(p))
            model.files[p] = mw.files.at(p);
          else
            model.files.erase(p);
          if (mw.dirs.count(p))
            model.dirs.insert(p);
          else
            model.dirs.erase(p);
        }
      }
    }
    std::fprintf(stderr,
                 "[veilsync] SharedMounts: %d rounds of 2 x %d ops, %zu files and %zu dirs at the end; the "
                 "other mount's changes showed within %lld ms at worst\n",
                 kRounds, kOps, model.files.size(), model.dirs.size(), worst);
    EXPECT_NO_ERROR(ma.unmount());
    if (mb) {
      EXPECT_NO_ERROR(mb->unmount());
    }
  }
  EXPECT_NO_ERROR(fsck_damage(a.cipher, a.passfile));
  Mount m(a);
  ASSERT_TRUE(m.ok()) << m.error();
  EXPECT_EQ(tree_difference(snapshot(a.mnt), model.tree(), "remounted", "model"), "") << "seed " << seed;
  EXPECT_NO_ERROR(m.unmount());
  for (const auto& l : veiltest::scan_for_plaintext(a.cipher, {"veilmark", veiltest::kContentMarker}))
    ADD_FAILURE() << l;
}

}  // namespace
}  // namespace veilsync
