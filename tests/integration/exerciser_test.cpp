// The seeded random-operation exerciser (fsx.hpp) checked byte for byte against an in-memory model across
// remounts, concurrent writers on one file, and more inodes than the daemon may hold descriptors for.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <latch>
#include <random>
#include <thread>

#include "fsx.hpp"
#include "harness.hpp"

namespace veiltest {
namespace {

class Exerciser : public MountedTest<Exerciser> {
 public:
  static constexpr const char* kSuiteName = "Exerciser";
};

uint64_t seed_from_env(uint64_t fallback) {
  const char* s = ::getenv("VEILFS_EXERCISER_SEED");
  return s && *s ? std::stoull(s) : fallback;
}

// Runs fsx (every operation kind of fsx.hpp) on four files in dir, compared with their models after every
// operation that reads and in full every 300 operations, across `remounts` remounts of the suite's volume (each
// file compared in full after each); the files' final contents go into the ledger.
template <class Suite>
void run_fsx(Suite& suite, const std::string& dir, uint64_t default_ops, uint64_t remounts) {
  fsx::RunConfig cfg;
  cfg.dir = dir;
  cfg.seed = seed_from_env(20261121);
  const char* ops = ::getenv("VEILFS_EXERCISER_OPS");
  cfg.ops = ops && *ops ? std::stoull(ops) : default_ops;
  cfg.files = 4;
  cfg.remount_every = (cfg.ops + remounts) / (remounts + 1);
  cfg.remount = [&]() -> std::string {
    std::string e = suite.remount();
    if (e.empty() && !suite.mounted()) e = "no mount after remount";
    return e;
  };
  std::fprintf(stderr, "[veilfs] fsx seed %llu, %llu operations (set VEILFS_EXERCISER_SEED / VEILFS_EXERCISER_OPS)\n",
               static_cast<unsigned long long>(cfg.seed), static_cast<unsigned long long>(cfg.ops));
  const fsx::RunReport rep = fsx::run(cfg);
  std::fprintf(stderr, "[veilfs] fsx: %llu operations in %.1f s (%.0f ops/s), %llu remounts\n",
               static_cast<unsigned long long>(rep.ops_done), rep.seconds, rep.ops_done / std::max(rep.seconds, 1e-9),
               static_cast<unsigned long long>(rep.remounts));
  for (const auto& [kind, cs] : rep.kinds)
    std::fprintf(stderr, "[veilfs]   %-22s %7llu in %6.2f s\n", kind.c_str(), static_cast<unsigned long long>(cs.first),
                 cs.second);
  ASSERT_TRUE(rep.error.empty()) << rep.error;
  EXPECT_EQ(rep.ops_done, cfg.ops);
  EXPECT_EQ(rep.remounts, cfg.ops > remounts ? remounts : 0);
  EXPECT_TRUE(rep.unsupported.empty()) << "operations the mount refused";
  for (const auto& [path, data] : rep.files) suite.ledger().keep(path.substr(suite.mnt().size() + 1), data);
}

// The long fsx run has a volume of its own, so that ctest runs it beside the other groups, and its backing
// directory on tmpfs (tests/integration/CMakeLists.txt): on the build machine's disk every fsync, msync and
// shrinking truncate waits for the disk, and 300,000 operations would take ten minutes instead of one. The disk's
// own behaviour (sparse punched slots, ZERO_RANGE) is Exerciser.FsxOnTheDisk's, Fallocate's and the content tests'.
class Fsx : public MountedTest<Fsx> {
 public:
  static constexpr const char* kSuiteName = "Fsx";
};

// Fewer operations where the daemon and the test run under a sanitizer (several times slower).
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr uint64_t kFsxOps = 30000;
#else
constexpr uint64_t kFsxOps = 300000;
#endif

TEST_F(Fsx, RandomOperationsOfEveryKindMatchTheModelAcrossRemounts) { run_fsx(suite(), dir(), kFsxOps, 5); }

TEST_F(Exerciser, FsxOnTheDisk) { run_fsx(suite(), dir(), 6000, 2); }

// The same under --shared-storage, where the kernel keeps no writeback cache and sends OPEN and RELEASE: mmap,
// O_DIRECT and fallocate take other paths through it. Also on tmpfs.
class FsxShared : public MountedTest<FsxShared> {
 public:
  static constexpr const char* kSuiteName = "FsxShared";
  static std::vector<std::string> mount_args() { return {"--shared-storage"}; }
};

TEST_F(FsxShared, RandomOperationsOfEveryKindMatchTheModelAcrossRemounts) { run_fsx(suite(), dir(), kFsxOps / 10, 2); }

TEST_F(Exerciser, ConcurrentWritersOfDisjointRegionsNeverCorruptEachOther) {
  const int kThreads = 4;
  const uint64_t seed = seed_from_env(77);
  std::mt19937_64 rng(seed);
  // Unaligned regions laid end to end: neighbours share blocks, so a read-modify-write that is not serialised
  // per block would lose a neighbour's bytes.
  struct Region {
    uint64_t off;
    std::string data;
  };
  std::vector<Region> regions;
  uint64_t off = 0;
  for (int i = 0; i < 240; ++i) {
    size_t len = 1 + rng() % (i % 10 == 0 ? 70000 : 9000);
    regions.push_back({off, random_bytes(len, rng())});
    off += len;
  }
  const uint64_t total = off;
  UniqueFd shared(::open(at("shared").c_str(), O_CREAT | O_RDWR, 0644));
  ASSERT_TRUE(shared);
  std::latch start(kThreads + 1);
  std::vector<std::atomic<bool>> done(regions.size());
  std::atomic<int> errors{0};
  std::vector<std::string> messages(kThreads + 1);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Half the writers share one descriptor, half have their own.
      UniqueFd own;
      int fd = shared.get();
      if (t % 2) {
        own.reset(::open(at("shared").c_str(), O_RDWR));
        fd = own.get();
      }
      std::vector<size_t> mine;
      for (size_t i = static_cast<size_t>(t); i < regions.size(); i += kThreads) mine.push_back(i);
      std::shuffle(mine.begin(), mine.end(), std::mt19937_64(seed + static_cast<uint64_t>(t)));
      start.arrive_and_wait();
      try {
        for (size_t i : mine) {
          write_fd_at(fd, regions[i].off, regions[i].data);
          done[i] = true;
        }
      } catch (const std::exception& e) {
        messages[static_cast<size_t>(t)] = e.what();
        ++errors;
      }
    });
  }
  // A reader checks finished regions while the writers are still going.
  threads.emplace_back([&] {
    UniqueFd fd(::open(at("shared").c_str(), O_RDONLY));
    start.arrive_and_wait();
    try {
      for (int pass = 0; pass < 3; ++pass)
        for (size_t i = 0; i < regions.size(); ++i) {
          if (!done[i]) continue;
          std::string got = read_fd_at(fd.get(), regions[i].off, regions[i].data.size());
          std::string d = first_difference(got, regions[i].data);
          if (!d.empty()) throw std::runtime_error("region " + std::to_string(i) + " read while writing: " + d);
        }
    } catch (const std::exception& e) {
      messages[kThreads] = e.what();
      ++errors;
    }
  });
  for (auto& th : threads) th.join();
  for (const auto& m : messages) EXPECT_EQ(m, "");
  ASSERT_EQ(errors.load(), 0);
  std::string want(total, '\0');
  for (const auto& r : regions) want.replace(r.off, r.data.size(), r.data);
  shared.reset();
  EXPECT_EQ(first_difference(read_file(at("shared")), want), "");
  struct stat st {};
  ASSERT_EQ(::stat(at("shared").c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), total);
  suite().ledger().keep(rel("shared"), want);
}

TEST_F(Exerciser, ConcurrentAppendersAndTruncatorsOnSeparateFilesStayIndependent) {
  // Per-inode caches (header, key) must never leak between files being written at the same time.
  const int kFiles = 6;
  std::vector<std::string> want(kFiles);
  std::vector<std::thread> threads;
  std::latch start(kFiles);
  std::vector<std::string> errors(kFiles);
  for (int f = 0; f < kFiles; ++f) {
    threads.emplace_back([&, f] {
      std::string p = at("file" + std::to_string(f));
      std::mt19937_64 rng(static_cast<uint64_t>(f) + 1000);
      start.arrive_and_wait();
      try {
        for (int round = 0; round < 40; ++round) {
          UniqueFd fd(::open(p.c_str(), O_CREAT | O_WRONLY | O_APPEND, 0644));
          if (!fd) throw std::runtime_error("open " + err_name(errno));
          std::string chunk = random_bytes(1 + rng() % 12000, rng());
          if (::write(fd.get(), chunk.data(), chunk.size()) != static_cast<ssize_t>(chunk.size()))
            throw std::runtime_error("append " + err_name(errno));
          want[static_cast<size_t>(f)] += chunk;
          if (round % 9 == 8) {
            size_t to = want[static_cast<size_t>(f)].size() / 3;
            if (::ftruncate(fd.get(), static_cast<off_t>(to)) != 0) throw std::runtime_error("ftruncate");
            want[static_cast<size_t>(f)].resize(to);
          }
        }
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(f)] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int f = 0; f < kFiles; ++f) {
    EXPECT_EQ(errors[static_cast<size_t>(f)], "");
    std::string p = at("file" + std::to_string(f));
    EXPECT_EQ(first_difference(read_file(p), want[static_cast<size_t>(f)]), "") << p;
    suite().ledger().keep(rel("file" + std::to_string(f)), want[static_cast<size_t>(f)]);
  }
}

TEST_F(Exerciser, ConcurrentTruncatesAndWritesNeverLeaveAnUnreadableFile) {
  // Which write wins against which truncate is up to the scheduler, but every byte must be one that was written
  // (1, 2, 3) or a zero, every block must authenticate, and the size must agree with fstat - now and after remount.
  UniqueFd fd(::open(at("racy").c_str(), O_CREAT | O_RDWR, 0644));
  ASSERT_TRUE(fd);
  std::latch start(4);
  std::atomic<bool> stop{false};
  std::vector<std::string> errors(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(static_cast<uint64_t>(t) + 500);
      start.arrive_and_wait();
      try {
        for (int i = 0; i < 400; ++i) {
          std::string d(1 + rng() % 20000, static_cast<char>(t + 1));
          write_fd_at(fd.get(), rng() % 300000, d);
        }
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(t)] = e.what();
      }
    });
  }
  threads.emplace_back([&] {
    std::mt19937_64 rng(999);
    start.arrive_and_wait();
    for (int i = 0; i < 300 && errors[3].empty(); ++i)
      if (::ftruncate(fd.get(), static_cast<off_t>(rng() % 320000)) != 0) errors[3] = "ftruncate " + err_name(errno);
  });
  for (auto& t : threads) t.join();
  for (const auto& e : errors) EXPECT_EQ(e, "");
  auto check = [&](const std::string& when) {
    std::string all;
    try {
      all = read_file(at("racy"));
    } catch (const std::exception& e) {
      ADD_FAILURE() << when << ": " << e.what();
      return;
    }
    struct stat st {};
    ASSERT_EQ(::stat(at("racy").c_str(), &st), 0);
    EXPECT_EQ(static_cast<size_t>(st.st_size), all.size()) << when;
    size_t bad = all.find_first_not_of(std::string("\0\1\2\3", 4));
    EXPECT_EQ(bad, std::string::npos) << when << ": byte " << bad << " was never written";
    return;
  };
  check("before remount");
  fd.reset();
  EXPECT_NO_ERROR(suite().remount());
  ASSERT_TRUE(suite().mounted());
  check("after remount");
}

TEST_F(Exerciser, ManyMoreInodesThanTheDaemonMayHoldDescriptorsFor) {
  // The kernel remembers every inode it has looked up; a daemon holding one descriptor per inode runs out
  // (libfuse's passthrough_ll does, with EMFILE). Cap the daemon at 256 descriptors and use 2,500 files.
  VolumeDir vol("manyfiles");
  ASSERT_NO_ERROR(vol.create());
  Mount m(vol, {}, 256);
  ASSERT_TRUE(m.ok()) << m.error();
  const int kDirs = 10, kPerDir = 250;
  for (int d = 0; d < kDirs; ++d) {
    std::string dp = vol.mnt + "/veilmark_d" + std::to_string(d);
    ASSERT_EQ(::mkdir(dp.c_str(), 0755), 0) << err_name(errno);
    for (int f = 0; f < kPerDir; ++f)
      write_file(dp + "/f" + std::to_string(f), "content " + std::to_string(d * 1000 + f));
  }
  // Keep some files open meanwhile, as a busy program would.
  std::vector<UniqueFd> held;
  for (int f = 0; f < 100; ++f) {
    held.emplace_back(::open((vol.mnt + "/veilmark_d0/f" + std::to_string(f)).c_str(), O_RDWR));
    ASSERT_TRUE(held.back()) << "holding file " << f << " open: " << err_name(errno);
  }
  for (int d = 0; d < kDirs; ++d) {
    std::string dp = vol.mnt + "/veilmark_d" + std::to_string(d);
    ASSERT_EQ(list_dir(dp).size(), static_cast<size_t>(kPerDir));
    for (int f = 0; f < kPerDir; ++f) {
      std::string p = dp + "/f" + std::to_string(f);
      struct stat st {};
      ASSERT_EQ(::stat(p.c_str(), &st), 0) << p << ": " << err_name(errno);
      ASSERT_EQ(read_file(p), "content " + std::to_string(d * 1000 + f));
    }
  }
  for (int f = 0; f < 100; ++f) {
    write_fd_at(held[static_cast<size_t>(f)].get(), 0, "CONTENT");
    ASSERT_EQ(::rename((vol.mnt + "/veilmark_d0/f" + std::to_string(f)).c_str(),
                       (vol.mnt + "/veilmark_d9/moved" + std::to_string(f)).c_str()),
              0)
        << err_name(errno);
  }
  held.clear();
  for (int f = 0; f < 100; ++f)
    EXPECT_EQ(read_file(vol.mnt + "/veilmark_d9/moved" + std::to_string(f)), "CONTENT " + std::to_string(f));
  // Open, then unlinked: the daemon hears of neither the open nor the close, and caches far fewer content
  // engines than there are files, so these are evicted while the next loop reads everything else; they must
  // still read and write through the open descriptors.
  for (int f = 0; f < 100; ++f) {
    std::string p = vol.mnt + "/veilmark_d1/f" + std::to_string(f);
    held.emplace_back(::open(p.c_str(), O_RDWR));
    ASSERT_TRUE(held.back()) << err_name(errno);
    ASSERT_EQ(::unlink(p.c_str()), 0) << err_name(errno);
  }
  for (int d = 2; d < kDirs - 1; ++d)
    for (int f = 0; f < kPerDir; ++f)
      ASSERT_EQ(read_file(vol.mnt + "/veilmark_d" + std::to_string(d) + "/f" + std::to_string(f)),
                "content " + std::to_string(d * 1000 + f));
  for (int f = 0; f < 100; ++f) {
    int fd = held[static_cast<size_t>(f)].get();
    std::string before = "content " + std::to_string(1000 + f);
    ASSERT_EQ(read_fd_at(fd, 0, 64), before) << "unlinked open file " << f;
    write_fd_at(fd, before.size(), " and more");
    ASSERT_EQ(::fsync(fd), 0) << err_name(errno);
    EXPECT_EQ(read_fd_at(fd, 0, 64), before + " and more");
  }
  held.clear();
  EXPECT_EQ(list_dir(vol.mnt + "/veilmark_d1").size(), static_cast<size_t>(kPerDir - 100));
  // Every unlink pins a descriptor until the kernel forgets the file: deleting thousands of files must not run
  // the daemon out of descriptors.
  for (int d = 0; d < kDirs; ++d) {
    std::string dp = vol.mnt + "/veilmark_d" + std::to_string(d);
    for (const auto& name : list_dir(dp)) ASSERT_EQ(::unlink((dp + "/" + name).c_str()), 0) << err_name(errno);
    ASSERT_EQ(::rmdir(dp.c_str()), 0) << err_name(errno);
  }
  EXPECT_TRUE(list_dir(vol.mnt).empty());
  EXPECT_NO_ERROR(m.unmount());
}

}  // namespace
}  // namespace veiltest
