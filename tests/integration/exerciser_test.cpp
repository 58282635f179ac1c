// A seeded random-operation exerciser (fsx-style) checked byte for byte against an in-memory model, across an
// unmount/remount, and concurrent writers on one file.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <latch>
#include <random>
#include <thread>

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

class Model {
 public:
  Model(std::string path, uint64_t seed) : path_(std::move(path)), rng_(seed) {}

  std::string open() {
    fd_.reset(::open(path_.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644));
    return fd_ ? "" : "open " + err_name(errno);
  }
  void close() { fd_.reset(); }
  const std::string& data() const { return data_; }
  const std::string& path() const { return path_; }

  // Offsets are drawn mostly near block and page boundaries, where the bugs are.
  uint64_t pick_offset(uint64_t limit) {
    if (limit == 0) return 0;
    switch (rng_() % 4) {
      case 0:
        return rng_() % limit;
      default: {
        uint64_t b = (rng_() % (limit / 4096 + 1)) * 4096;
        int64_t delta = static_cast<int64_t>(rng_() % 5) - 2;
        int64_t o = static_cast<int64_t>(b) + delta;
        return static_cast<uint64_t>(std::clamp<int64_t>(o, 0, static_cast<int64_t>(limit)));
      }
    }
  }
  size_t pick_len() {
    switch (rng_() % 8) {
      case 0:
        return 1 + rng_() % 8;
      case 1:
        return 4096;
      case 2:
        return 65536 + rng_() % (256 * 1024);
      default:
        return 1 + rng_() % 16384;
    }
  }

  // Performs one random operation; returns an error description or empty.
  std::string step(uint64_t n, std::string& what) {
    const uint64_t kMax = 3 << 20;
    uint64_t size = data_.size();
    unsigned op = rng_() % 100;
    char buf[160];
    if (op < 30) {  // write
      uint64_t off = pick_offset(std::min(size + 8192, kMax));
      size_t len = std::min<uint64_t>(pick_len(), kMax - off + 1);
      std::string d = random_bytes(len, rng_());
      std::snprintf(buf, sizeof buf, "#%llu write off=%llu len=%zu", ull(n), ull(off), len);
      what = buf;
      try {
        write_fd_at(fd_.get(), off, d);
      } catch (const std::exception& e) {
        return e.what();
      }
      if (data_.size() < off + len) data_.resize(off + len, '\0');
      data_.replace(off, len, d);
    } else if (op < 50) {  // read and compare
      uint64_t off = pick_offset(size + 100);
      size_t len = pick_len();
      std::snprintf(buf, sizeof buf, "#%llu read off=%llu len=%zu", ull(n), ull(off), len);
      what = buf;
      std::string got;
      try {
        got = read_fd_at(fd_.get(), off, len);
      } catch (const std::exception& e) {
        return e.what();
      }
      std::string want = off < size ? data_.substr(off, len) : "";
      std::string d = first_difference(got, want);
      if (!d.empty()) return "read mismatch: " + d;
    } else if (op < 62) {  // truncate
      uint64_t to = pick_offset(std::min<uint64_t>(size * 2 + 10000, kMax));
      std::snprintf(buf, sizeof buf, "#%llu ftruncate %llu -> %llu", ull(n), ull(size), ull(to));
      what = buf;
      if (::ftruncate(fd_.get(), static_cast<off_t>(to)) != 0) return "ftruncate: " + err_name(errno);
      data_.resize(to, '\0');
    } else if (op < 72) {  // write through a shared mapping
      if (size == 0) return "";
      uint64_t off = pick_offset(size - 1);
      size_t len = std::min<uint64_t>(pick_len(), size - off);
      bool sync = rng_() % 2;
      std::snprintf(buf, sizeof buf, "#%llu mmap-write off=%llu len=%zu%s", ull(n), ull(off), len,
                    sync ? " msync" : "");
      what = buf;
      uint64_t page = off & ~uint64_t{4095};
      size_t maplen = static_cast<size_t>(off + len - page);
      void* p = ::mmap(nullptr, maplen, PROT_READ | PROT_WRITE, MAP_SHARED, fd_.get(), static_cast<off_t>(page));
      if (p == MAP_FAILED) return "mmap: " + err_name(errno);
      std::string d = random_bytes(len, rng_());
      std::memcpy(static_cast<char*>(p) + (off - page), d.data(), len);
      int r = sync ? ::msync(p, maplen, MS_SYNC) : 0;
      int e = errno;
      ::munmap(p, maplen);
      if (r != 0) return "msync: " + err_name(e);
      data_.replace(off, len, d);
    } else if (op < 80) {  // read through a mapping
      if (size == 0) return "";
      uint64_t off = pick_offset(size - 1);
      size_t len = std::min<uint64_t>(pick_len(), size - off);
      std::snprintf(buf, sizeof buf, "#%llu mmap-read off=%llu len=%zu", ull(n), ull(off), len);
      what = buf;
      uint64_t page = off & ~uint64_t{4095};
      size_t maplen = static_cast<size_t>(off + len - page);
      void* p = ::mmap(nullptr, maplen, PROT_READ, MAP_SHARED, fd_.get(), static_cast<off_t>(page));
      if (p == MAP_FAILED) return "mmap: " + err_name(errno);
      std::string got(static_cast<char*>(p) + (off - page), len);
      ::munmap(p, maplen);
      std::string d = first_difference(got, data_.substr(off, len));
      if (!d.empty()) return "mapped read mismatch: " + d;
    } else if (op < 88) {  // fallocate, mode 0 or KEEP_SIZE
      uint64_t off = pick_offset(std::min(size + 8192, kMax));
      size_t len = std::min<uint64_t>(pick_len(), kMax - off + 1);
      bool keep = rng_() % 2;
      std::snprintf(buf, sizeof buf, "#%llu fallocate%s off=%llu len=%zu", ull(n), keep ? " KEEP_SIZE" : "", ull(off),
                    len);
      what = buf;
      if (::fallocate(fd_.get(), keep ? FALLOC_FL_KEEP_SIZE : 0, static_cast<off_t>(off), static_cast<off_t>(len)) != 0)
        return "fallocate: " + err_name(errno);
      if (!keep && data_.size() < off + len) data_.resize(off + len, '\0');
    } else if (op < 93) {  // fstat
      std::snprintf(buf, sizeof buf, "#%llu fstat", ull(n));
      what = buf;
      struct stat st {};
      if (::fstat(fd_.get(), &st) != 0) return "fstat: " + err_name(errno);
      if (static_cast<uint64_t>(st.st_size) != size)
        return "st_size " + std::to_string(st.st_size) + ", expected " + std::to_string(size);
    } else if (op < 96) {  // fsync
      std::snprintf(buf, sizeof buf, "#%llu fsync", ull(n));
      what = buf;
      if (::fsync(fd_.get()) != 0) return "fsync: " + err_name(errno);
    } else {  // close and reopen
      std::snprintf(buf, sizeof buf, "#%llu reopen", ull(n));
      what = buf;
      close();
      return open();
    }
    return "";
  }

  std::string verify_all() const {
    try {
      return first_difference(read_file(path_), data_);
    } catch (const std::exception& e) {
      return e.what();
    }
  }

 private:
  static unsigned long long ull(uint64_t v) { return v; }
  std::string path_;
  std::mt19937_64 rng_;
  std::string data_;
  UniqueFd fd_;
};

TEST_F(Exerciser, RandomOperationsMatchTheModelAcrossRemount) {
  const uint64_t seed = seed_from_env(20261121);
  const int kOps = 8000;
  std::fprintf(stderr, "[veilfs] exerciser seed %llu (set VEILFS_EXERCISER_SEED to replay)\n",
               static_cast<unsigned long long>(seed));
  std::vector<std::unique_ptr<Model>> files;
  for (int i = 0; i < 3; ++i) {
    files.push_back(std::make_unique<Model>(at("fsx" + std::to_string(i)), seed * 31 + static_cast<uint64_t>(i)));
    ASSERT_NO_ERROR(files.back()->open());
  }
  std::mt19937_64 pick(seed);
  std::deque<std::string> recent;  // the last operations, printed on failure
  for (int n = 0; n < kOps; ++n) {
    if (n == kOps / 2) {
      for (auto& f : files) f->close();
      EXPECT_NO_ERROR(suite().remount()) << "remount in the middle of the exerciser";
      ASSERT_TRUE(suite().mounted()) << "no mount after remount";
      for (auto& f : files) {
        ASSERT_NO_ERROR(f->verify_all()) << f->path() << " after remount";
        ASSERT_NO_ERROR(f->open());
      }
    }
    auto& f = *files[pick() % files.size()];
    std::string what;
    std::string err = f.step(static_cast<uint64_t>(n), what);
    recent.push_back(f.path().substr(dir().size() + 1) + " " + what);
    if (recent.size() > 25) recent.pop_front();
    if (!err.empty() || n % 300 == 299) {
      if (err.empty()) err = f.verify_all();
      if (!err.empty()) {
        std::string trail;
        for (const auto& r : recent) trail += "  " + r + "\n";
        FAIL() << "seed " << seed << ", operation " << n << " on " << f.path() << ": " << err << "\nlast operations:\n"
               << trail;
      }
    }
  }
  for (auto& f : files) {
    f->close();
    EXPECT_NO_ERROR(f->verify_all()) << f->path();
    suite().ledger().keep(f->path().substr(mnt().size() + 1), f->data());
  }
}

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
