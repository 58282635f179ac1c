// InodeTable on a plain directory (no volume, no /dev/fuse): lookup counts and forget, one Inode per backing
// object, the cap on cached O_PATH descriptors and its LRU order, pinning, and reopening an evicted Inode from
// its last known location (also after a rename, and never onto another object).
#include "fuse/inode_table.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "fuse/fuse_api.hpp"
#include "fuse_test_util.hpp"
#include "veilfs/util/error.hpp"

namespace veil::fuse::testing {
namespace {

class InodeTableTest : public ::testing::Test {
 protected:
  void make_table(size_t cap) {
    UniqueFd root(::open(dir_.path().c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(root);
    struct stat st;
    ASSERT_EQ(::fstat(root.get(), &st), 0);
    table_ = std::make_unique<InodeTable>(std::move(root), st, cap);
  }

  // Backing objects, by path relative to the directory.
  void touch(const std::string& rel) {
    UniqueFd fd(::open(dir_.file(rel).c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    ASSERT_TRUE(fd) << rel;
  }
  void make_dir(const std::string& rel) { ASSERT_EQ(::mkdir(dir_.file(rel).c_str(), 0700), 0) << rel; }
  struct stat lstat_of(const std::string& rel) {
    struct stat st {};
    EXPECT_EQ(::lstat(dir_.file(rel).c_str(), &st), 0) << rel;
    return st;
  }
  UniqueFd path_fd(const std::string& rel) {
    return UniqueFd(::open(dir_.file(rel).c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  }
  void move(const std::string& from, const std::string& to) {
    ASSERT_EQ(std::rename(dir_.file(from).c_str(), dir_.file(to).c_str()), 0) << from << " -> " << to;
  }

  // A lookup of the object at `rel`, found as `name` in parent; with_fd: hands the table a descriptor to cache.
  std::shared_ptr<Inode> add(Inode& parent, const std::string& rel, const std::string& name, bool with_fd = true) {
    return table_->intern(parent, name, lstat_of(rel), with_fd ? path_fd(rel) : UniqueFd());
  }
  std::shared_ptr<Inode> add(const std::string& name, bool with_fd = true) {
    return add(table_->root(), name, name, with_fd);
  }

  bool cached(Inode& n) { return table_->cached_fd(n) != nullptr; }
  size_t fds() { return count_fds_under(dir_.path()); }
  static struct stat fstat_of(const FdPtr& f) {
    struct stat st {};
    EXPECT_EQ(::fstat(f->get(), &st), 0);
    return st;
  }

  TempDir dir_;
  std::unique_ptr<InodeTable> table_;
};

TEST_F(InodeTableTest, RootIsFuseRootIdAndIsNeverForgotten) {
  make_table(4);
  Inode& root = table_->root();
  EXPECT_EQ(table_->fuse_ino(root), FUSE_ROOT_ID);
  EXPECT_EQ(&table_->get(FUSE_ROOT_ID), &root);
  EXPECT_FALSE(table_->forget(root, 1000));
  FdPtr f = table_->fd(root);
  ASSERT_TRUE(f);
  EXPECT_EQ(fstat_of(f).st_ino, root.ino);
  EXPECT_EQ(table_->location(root).first, nullptr);
  // The root has no location to move to and is pinned already.
  touch("a");
  auto a = add("a");
  table_->set_location(root, *a, "x");
  EXPECT_EQ(table_->location(root).first, nullptr);
  table_->pin(root);
  EXPECT_EQ(table_->cached_fd(root), f);
}

TEST_F(InodeTableTest, LookupsOfOneObjectShareOneInodeUntilTheLastForget) {
  make_table(4);
  touch("a");
  auto n = add("a");
  EXPECT_EQ(add("a"), n);
  EXPECT_EQ(add("a", false), n);
  EXPECT_EQ(n->nlookup, 3u);
  EXPECT_EQ(&table_->get(table_->fuse_ino(*n)), n.get());
  EXPECT_NE(table_->fuse_ino(*n), FUSE_ROOT_ID);
  EXPECT_EQ(table_->find(n->dev, n->ino), n);

  EXPECT_FALSE(table_->forget(*n, 2));
  EXPECT_EQ(n->nlookup, 1u);
  EXPECT_EQ(table_->find(n->dev, n->ino), n);

  // The last forget: nothing else holds the Inode, so it goes, and a new lookup makes a new one.
  Inode& raw = *n;
  std::weak_ptr<Inode> weak = n;
  n.reset();
  EXPECT_TRUE(table_->forget(raw, 1));
  EXPECT_TRUE(weak.expired());
  struct stat st = lstat_of("a");
  EXPECT_EQ(table_->find(st.st_dev, st.st_ino), nullptr);
  auto again = add("a");
  EXPECT_EQ(again->nlookup, 1u);
}

TEST_F(InodeTableTest, ForgetCountsAboveTheLookupCountEndTheInode) {
  make_table(4);
  touch("a");
  auto n = add("a");
  add("a");
  EXPECT_TRUE(table_->forget(*n, 100));
  EXPECT_EQ(n->nlookup, 0u);
}

TEST_F(InodeTableTest, HardLinksShareOneInode) {
  make_table(4);
  touch("a");
  ASSERT_EQ(::link(dir_.file("a").c_str(), dir_.file("b").c_str()), 0);
  auto a = add("a");
  auto b = add("b");
  EXPECT_EQ(a, b);
  EXPECT_EQ(a->nlookup, 2u);
  EXPECT_EQ(table_->location(*a).second, "b");  // the name it was last seen under
  EXPECT_FALSE(table_->forget(*a, 1));
}

TEST_F(InodeTableTest, AFreshOrRetypedInodeNumberGetsANewInode) {
  make_table(4);
  touch("a");
  auto old = add("a");
  struct stat st = lstat_of("a");
  // Just created: the number was freed and reused, so the old Inode must not be reused.
  auto fresh = table_->intern(table_->root(), "a", st, {}, /*fresh=*/true);
  EXPECT_NE(fresh, old);
  EXPECT_EQ(table_->find(st.st_dev, st.st_ino), fresh);
  // Same number, other type: also a reused number.
  struct stat as_dir = st;
  as_dir.st_mode = S_IFDIR | 0700;
  auto dir = table_->intern(table_->root(), "a", as_dir);
  EXPECT_NE(dir, fresh);
  EXPECT_EQ(dir->type, static_cast<mode_t>(S_IFDIR));
  EXPECT_EQ(dir->nlookup, 1u);
  // The replaced Inodes are no longer indexed; the kernel forgets them (the destructor frees them too: see
  // DestroyingTheTableFreesInodesThatAreNoLongerIndexed).
  EXPECT_TRUE(table_->forget(*old, 1));
  EXPECT_TRUE(table_->forget(*fresh, 1));
}

TEST_F(InodeTableTest, CachedDescriptorsNeverExceedTheCap) {
  constexpr size_t kCap = 3;
  make_table(kCap);
  std::vector<std::shared_ptr<Inode>> ns;
  for (int i = 0; i < 10; ++i) {
    std::string name = "f" + std::to_string(i);
    touch(name);
    ns.push_back(add(name));
    EXPECT_LE(fds(), 1 + kCap) << "after " << name;
  }
  size_t with_fd = 0;
  for (auto& n : ns) with_fd += cached(*n) ? 1 : 0;
  EXPECT_EQ(with_fd, kCap);
  EXPECT_EQ(fds(), 1 + kCap);  // the root's and the cached ones: the evicted ones were closed

  // Asking for every descriptor reopens the evicted ones, each the right object, within the cap.
  for (auto& n : ns) {
    FdPtr f = table_->fd(*n);
    EXPECT_EQ(fstat_of(f).st_ino, n->ino);
    EXPECT_LE(fds(), 1 + kCap);
  }
  EXPECT_EQ(fds(), 1 + kCap);
}

TEST_F(InodeTableTest, TheLeastRecentlyUsedDescriptorIsEvictedFirst) {
  make_table(2);
  touch("a");
  touch("b");
  touch("c");
  touch("d");
  auto a = add("a");
  auto b = add("b");
  table_->fd(*a);  // a is now the most recent: b goes first
  auto c = add("c");
  EXPECT_TRUE(cached(*a));
  EXPECT_FALSE(cached(*b));
  EXPECT_TRUE(cached(*c));
  auto d = add("d");  // then a, the least recent of a and c
  EXPECT_FALSE(cached(*a));
  EXPECT_TRUE(cached(*c));
  EXPECT_TRUE(cached(*d));
}

TEST_F(InodeTableTest, APinnedDescriptorIsNeverEvictedAndTakesNoSlot) {
  constexpr size_t kCap = 2;
  make_table(kCap);
  touch("a");
  auto a = add("a");
  table_->pin(*a);
  FdPtr pinned = table_->cached_fd(*a);
  ASSERT_TRUE(pinned);
  std::vector<std::shared_ptr<Inode>> others;
  for (int i = 0; i < 8; ++i) {
    std::string name = "o" + std::to_string(i);
    touch(name);
    others.push_back(add(name));
    EXPECT_EQ(table_->cached_fd(*a), pinned) << "after " << name;
  }
  size_t with_fd = 0;
  for (auto& n : others) with_fd += cached(*n) ? 1 : 0;
  EXPECT_EQ(with_fd, kCap);  // the pinned one takes none of the cap's slots
  EXPECT_EQ(fds(), 1 + 1 + kCap);

  // Pinning an evicted Inode reopens it, and it then stays too.
  ASSERT_FALSE(cached(*others[0]));
  table_->pin(*others[0]);
  FdPtr second = table_->cached_fd(*others[0]);
  ASSERT_TRUE(second);
  EXPECT_EQ(fstat_of(second).st_ino, others[0]->ino);
  for (int i = 0; i < 4; ++i) {
    std::string name = "p" + std::to_string(i);
    touch(name);
    others.push_back(add(name));
  }
  EXPECT_EQ(table_->cached_fd(*others[0]), second);
  EXPECT_EQ(table_->cached_fd(*a), pinned);
  EXPECT_EQ(fds(), 1 + 2 + kCap);
}

TEST_F(InodeTableTest, APinnedInodeStaysReachableAfterItsNameIsGone) {
  make_table(1);
  touch("a");
  touch("b");
  auto a = add("a");
  auto b = add("b");
  table_->pin(*a);
  touch("c");
  touch("d");
  add("c");
  add("d");
  ASSERT_FALSE(cached(*b));
  // Nothing is created after the unlinks: a new file could get b's freed inode number, and a lookup of it
  // would then find b's Inode (Fs pins every known Inode before it unlinks it, so that cannot happen there).
  ASSERT_EQ(::unlink(dir_.file("a").c_str()), 0);
  ASSERT_EQ(::unlink(dir_.file("b").c_str()), 0);

  FdPtr f = table_->fd(*a);
  struct stat st = fstat_of(f);
  EXPECT_EQ(st.st_ino, a->ino);
  EXPECT_EQ(st.st_nlink, 0u);
  // Unpinned, its descriptor was evicted, and there is no name left to reopen it from.
  EXPECT_EQ(errno_of([&] { table_->fd(*b); }), ENOENT);
  try {
    table_->fd(*b);
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::NotFound);
  }
}

TEST_F(InodeTableTest, AnEvictedInodeReopensAnOPathDescriptorOfTheSameObject) {
  make_table(1);
  touch("a");
  touch("b");
  auto a = add("a");
  add("b");
  ASSERT_FALSE(cached(*a));
  FdPtr f = table_->fd(*a);
  ASSERT_TRUE(f);
  EXPECT_EQ(fstat_of(f).st_ino, a->ino);
  EXPECT_EQ(fstat_of(f).st_dev, a->dev);
  EXPECT_TRUE(::fcntl(f->get(), F_GETFL) & O_PATH);
  EXPECT_EQ(table_->cached_fd(*a), f);  // and caches it
  EXPECT_EQ(fds(), 2u);
}

TEST_F(InodeTableTest, AnEvictedInodeReopensUnderItsNewLocationAfterARename) {
  make_table(1);
  make_dir("d");
  touch("d/f");
  auto d = add("d");
  auto f = add(*d, "d/f", "f");
  move("d/f", "g");  // to another directory
  table_->set_location(*f, table_->root(), "g");
  auto [parent, name] = table_->location(*f);
  EXPECT_EQ(parent.get(), &table_->root());
  EXPECT_EQ(name, "g");
  touch("x");
  add("x");
  ASSERT_FALSE(cached(*f));
  FdPtr fd = table_->fd(*f);
  EXPECT_EQ(fstat_of(fd).st_ino, f->ino);

  // A renamed directory: its children reopen through its new name.
  touch("d/h");
  auto h = add(*d, "d/h", "h");
  move("d", "e");
  table_->set_location(*d, table_->root(), "e");
  add("x");
  ASSERT_FALSE(cached(*h));
  ASSERT_FALSE(cached(*d));
  EXPECT_EQ(fstat_of(table_->fd(*h)).st_ino, h->ino);
}

TEST_F(InodeTableTest, AStaleLocationYieldsEnoentNeverAnotherObject) {
  make_table(1);
  touch("a");
  touch("x");
  auto a = add("a");
  add("x");
  ASSERT_FALSE(cached(*a));
  move("a", "a2");  // behind the table's back
  touch("a");       // another object under the old name
  ASSERT_NE(lstat_of("a").st_ino, a->ino);
  size_t before = fds();
  EXPECT_EQ(errno_of([&] { table_->fd(*a); }), ENOENT);
  EXPECT_FALSE(cached(*a));
  EXPECT_EQ(fds(), before);  // the descriptor of the other object was closed
  // Told where it went, it is found again.
  table_->set_location(*a, table_->root(), "a2");
  EXPECT_EQ(fstat_of(table_->fd(*a)).st_ino, a->ino);
}

TEST_F(InodeTableTest, ReopeningThroughEvictedParentsKeepsTheCap) {
  make_table(1);
  make_dir("d1");
  make_dir("d1/d2");
  make_dir("d1/d2/d3");
  touch("d1/d2/d3/f");
  touch("x");
  auto d1 = add("d1");
  auto d2 = add(*d1, "d1/d2", "d2");
  auto d3 = add(*d2, "d1/d2/d3", "d3");
  auto f = add(*d3, "d1/d2/d3/f", "f");
  add("x");
  for (auto* n : {d1.get(), d2.get(), d3.get(), f.get()}) ASSERT_FALSE(cached(*n));
  FdPtr fd = table_->fd(*f);
  EXPECT_EQ(fstat_of(fd).st_ino, f->ino);
  EXPECT_EQ(fds(), 2u);  // the root's and f's: the parents' descriptors opened on the way were not kept
  EXPECT_FALSE(cached(*d1));
}

TEST_F(InodeTableTest, TheLastForgetClosesTheDescriptorPinnedOrNot) {
  make_table(8);
  EXPECT_EQ(fds(), 1u);
  touch("a");
  touch("b");
  auto a = add("a");
  add("a");
  EXPECT_EQ(fds(), 2u);
  EXPECT_FALSE(table_->forget(*a, 1));
  EXPECT_EQ(fds(), 2u);
  EXPECT_TRUE(table_->forget(*a, 1));
  EXPECT_EQ(fds(), 1u);
  EXPECT_FALSE(cached(*a));

  auto b = add("b");
  table_->pin(*b);
  EXPECT_EQ(fds(), 2u);
  Inode& raw = *b;
  std::weak_ptr<Inode> weak = b;
  b.reset();
  EXPECT_TRUE(table_->forget(raw, 1));
  EXPECT_TRUE(weak.expired());
  EXPECT_EQ(fds(), 1u);
}

TEST_F(InodeTableTest, AForgottenDirectoryStaysReachableForItsChildren) {
  make_table(2);
  make_dir("d");
  touch("d/f");
  touch("x");
  touch("y");
  auto d = add("d");
  auto f = add(*d, "d/f", "f");
  ASSERT_TRUE(cached(*d));
  Inode& dir = *d;
  const uint64_t dir_ino = table_->fuse_ino(dir);
  std::weak_ptr<Inode> weak = d;
  d.reset();
  EXPECT_TRUE(table_->forget(dir, 1));
  // f's parent link keeps it, still indexed (a new lookup must find the same node id), its descriptor closed.
  ASSERT_FALSE(weak.expired());
  EXPECT_EQ(table_->find(dir.dev, dir.ino), weak.lock());
  EXPECT_FALSE(cached(dir));
  EXPECT_EQ(fds(), 2u);
  add("x");
  add("y");
  ASSERT_FALSE(cached(*f));
  EXPECT_EQ(fstat_of(table_->fd(*f)).st_ino, f->ino);  // reopened through the forgotten directory
  auto again = add("d");
  EXPECT_EQ(table_->fuse_ino(*again), dir_ino);
  EXPECT_EQ(again->nlookup, 1u);

  // Once nothing is left, everything goes.
  again.reset();
  EXPECT_TRUE(table_->forget(dir, 1));
  Inode& file = *f;
  f.reset();
  EXPECT_TRUE(table_->forget(file, 1));
  EXPECT_TRUE(weak.expired());
}

TEST_F(InodeTableTest, DestroyingTheTableFreesEveryInodeAndDescriptor) {
  make_table(2);
  make_dir("d");
  touch("d/f");
  touch("d/g");
  touch("p");
  std::vector<std::weak_ptr<Inode>> weak;
  {
    auto d = add("d");
    auto f = add(*d, "d/f", "f");
    auto g = add(*d, "d/g", "g");
    auto p = add("p");
    table_->pin(*p);
    for (auto* n : {&d, &f, &g, &p}) weak.push_back(*n);
  }
  EXPECT_GT(fds(), 1u);
  for (auto& w : weak) EXPECT_FALSE(w.expired());  // the kernel still knows them all
  table_.reset();
  for (auto& w : weak) EXPECT_TRUE(w.expired());
  EXPECT_EQ(fds(), 0u);
}

// An Inode the kernel still knows but that left the index (unindex() after rmdir or a rename over a directory, or
// one replaced by intern() for a reused inode number) keeps itself alive through `self`, and through its parent
// link the root (whose descriptor stays open): ~InodeTable must break those links too.
TEST_F(InodeTableTest, DestroyingTheTableFreesInodesThatAreNoLongerIndexed) {
  make_table(4);
  make_dir("d");
  touch("d/f");
  touch("g");
  std::vector<std::weak_ptr<Inode>> weak;
  {
    auto d = add("d");
    auto f = add(*d, "d/f", "f");
    table_->unindex(*d);  // as Fs::rmdir does once the backing directory is gone
    auto g = add("g");
    auto g2 = table_->intern(table_->root(), "g", lstat_of("g"), {}, /*fresh=*/true);  // a reused number
    for (auto* n : {&d, &f, &g, &g2}) weak.push_back(*n);
    weak.push_back(table_->root().shared_from_this());
  }
  table_.reset();
  for (size_t i = 0; i < weak.size(); ++i) EXPECT_TRUE(weak[i].expired()) << i;
  EXPECT_EQ(fds(), 0u);
}

TEST_F(InodeTableTest, ForgottenObjectsDoNotAccumulateInTheIndex) {
  make_table(8);
  // As Fs::forget does: the caller holds a reference of its own while the last lookup is forgotten.
  for (int i = 0; i < 2000; ++i) {
    std::string name = "f" + std::to_string(i);
    touch(name);
    auto n = add(name, /*with_fd=*/i % 2 == 0);
    EXPECT_TRUE(table_->forget(*n, 1));
    EXPECT_FALSE(table_->forget(*n, 1)) << "a repeated forget must change nothing";
  }
  EXPECT_LT(table_->index_entries(), 200u);
  auto kept = add("f7");
  for (int i = 0; i < 500; ++i) {
    auto n = add("f" + std::to_string(1000 + i));
    table_->forget(*n, 1);
  }
  EXPECT_EQ(table_->find(kept->dev, kept->ino), kept);  // a live entry survives every sweep
}

}  // namespace
}  // namespace veil::fuse::testing
