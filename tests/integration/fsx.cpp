#include "fsx.hpp"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>

namespace veiltest::fsx {
namespace {

constexpr uint64_t kPage = 4096;

unsigned long long ull(uint64_t v) { return v; }

std::string errstr(const char* what, int e) {
  const char* name = strerrorname_np(e);
  return std::string(what) + ": " + (name ? name : "?") + " (" + std::strerror(e) + ")";
}

// Deterministic bytes, eight per step (splitmix64): a run writes gigabytes of them.
std::string random_bytes(size_t n, uint64_t seed) {
  std::string out(n, '\0');
  uint64_t x = seed;
  size_t i = 0;
  auto next = [&] {
    uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  };
  for (; i + 8 <= n; i += 8) {
    uint64_t v = next();
    std::memcpy(out.data() + i, &v, 8);
  }
  for (uint64_t v = next(); i < n; ++i, v >>= 8) out[i] = static_cast<char>(v);
  return out;
}

std::string difference(const std::string& got, const std::string& want) {
  const size_t n = std::min(got.size(), want.size());
  const size_t i = static_cast<size_t>(
      std::mismatch(got.begin(), got.begin() + static_cast<std::ptrdiff_t>(n), want.begin()).first - got.begin());
  if (i == n && got.size() == want.size()) return "";
  char buf[200];
  if (i < n) {
    size_t end = i;
    while (end < n && got[end] != want[end]) ++end;
    std::snprintf(buf, sizeof buf,
                  "size %zu (expected %zu), first differing byte at %zu (got 0x%02x, expected 0x%02x), "
                  "differing run of %zu bytes",
                  got.size(), want.size(), i, static_cast<unsigned>(got[i]) & 0xff,
                  static_cast<unsigned>(want[i]) & 0xff, end - i);
  } else {
    std::snprintf(buf, sizeof buf, "size %zu (expected %zu), equal over the common prefix", got.size(), want.size());
  }
  return buf;
}

// A page-aligned buffer and a pointer `misalign` bytes into it: O_DIRECT from an unaligned user buffer.
struct DirectBuffer {
  DirectBuffer(size_t len, size_t misalign) {
    size_t cap = (len + misalign + kPage - 1) / kPage * kPage;
    base.reset(static_cast<char*>(std::aligned_alloc(kPage, std::max<size_t>(cap, kPage))));
    p = base.get() + misalign;
  }
  struct Free {
    void operator()(char* q) const { std::free(q); }
  };
  std::unique_ptr<char, Free> base;
  char* p;
};

// Full transfers: 0 or an errno. pread_all stops early only at the end of the file (*got says how far it came).
int pwrite_all(int fd, const char* p, size_t n, uint64_t off) {
  for (size_t done = 0; done < n;) {
    ssize_t r = ::pwrite(fd, p + done, n - done, static_cast<off_t>(off + done));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return errno;
    if (r == 0) return EIO;
    done += static_cast<size_t>(r);
  }
  return 0;
}
int pread_all(int fd, char* p, size_t n, uint64_t off, size_t* got) {
  *got = 0;
  while (*got < n) {
    ssize_t r = ::pread(fd, p + *got, n - *got, static_cast<off_t>(off + *got));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return errno;
    if (r == 0) break;
    *got += static_cast<size_t>(r);
  }
  return 0;
}

}  // namespace

File::File(std::string path, uint64_t seed, const Options& opt) : path_(std::move(path)), opt_(opt), rng_(seed) {}

std::string File::open() {
  fd_.reset(::open(path_.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644));
  if (!fd_) return errstr("open", errno);
  direct_.reset(::open(path_.c_str(), O_RDWR | O_DIRECT | O_CLOEXEC));
  if (!direct_ && !(opt_.tolerate_unsupported && errno == EINVAL)) return errstr("open O_DIRECT", errno);
  return "";
}

void File::close() {
  fd_.reset();
  direct_.reset();
}

std::string File::verify_all() const {
  veil::UniqueFd fd(::open(path_.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return errstr("open for verification", errno);
  std::string got(data_.size() + 4096, '\0');
  size_t n = 0;
  if (int e = pread_all(fd.get(), got.data(), got.size(), 0, &n)) return errstr("read for verification", e);
  got.resize(n);
  std::string d = difference(got, data_);
  return d.empty() ? "" : "whole-file comparison: " + d;
}

// Offsets are drawn mostly near block and page boundaries, where the bugs are.
uint64_t File::pick_offset(uint64_t limit) {
  if (limit == 0) return 0;
  if (rng_() % 4 == 0) return rng_() % limit;
  uint64_t b = (rng_() % (limit / kPage + 1)) * kPage;
  int64_t o = static_cast<int64_t>(b) + static_cast<int64_t>(rng_() % 5) - 2;
  return static_cast<uint64_t>(std::clamp<int64_t>(o, 0, static_cast<int64_t>(limit)));
}

size_t File::pick_len() {
  switch (rng_() % 8) {
    case 0:
      return 1 + rng_() % 8;
    case 1:
      return kPage;
    case 2:
      return 65536 + rng_() % (256 * 1024);
    default:
      return 1 + rng_() % 16384;
  }
}

std::string File::skip(const char* op, int err) {
  if (!opt_.tolerate_unsupported) return errstr(op, err);
  ++unsupported_[op];
  return "";
}

std::string File::step(uint64_t n, std::string& what, File& peer) {
  const unsigned op = rng_() % 100;
  if (op < 18) return op_write(n, what);
  if (op < 32 || op >= 97) return op_read(n, what);
  if (op < 37) return op_truncate(n, what);
  if (op < 44) return op_mmap_write(n, what);
  if (op < 49) return op_mmap_read(n, what);
  if (op < 65) return op_fallocate(n, what, op - 49);
  if (op < 66) return op_refused(n, what);
  if (op < 73) return op_copy_range(n, what, peer);
  if (op < 79) return op_direct_write(n, what);
  if (op < 85) return op_direct_read(n, what);
  if (op < 90) return op_fstat(n, what);
  if (op < 94) return op_fsync(n, what);
  what = "#" + std::to_string(n) + " reopen";
  close();
  return open();
}

std::string File::op_write(uint64_t n, std::string& what) {
  const uint64_t off = pick_offset(std::min(data_.size() + 8192, opt_.max_size));
  const size_t len = std::min<uint64_t>(pick_len(), opt_.max_size - off + 1);
  const std::string d = random_bytes(len, rng_());
  char buf[120];
  std::snprintf(buf, sizeof buf, "#%llu write off=%llu len=%zu", ull(n), ull(off), len);
  what = buf;
  if (int e = pwrite_all(fd_.get(), d.data(), len, off)) return errstr("pwrite", e);
  if (data_.size() < off + len) data_.resize(off + len, '\0');
  data_.replace(off, len, d);
  return "";
}

std::string File::op_read(uint64_t n, std::string& what) {
  const uint64_t size = data_.size();
  const uint64_t off = pick_offset(size + 100);
  const size_t len = pick_len();
  char buf[120];
  std::snprintf(buf, sizeof buf, "#%llu read off=%llu len=%zu", ull(n), ull(off), len);
  what = buf;
  std::string got(len, '\0');
  size_t r = 0;
  if (int e = pread_all(fd_.get(), got.data(), len, off, &r)) return errstr("pread", e);
  got.resize(r);
  std::string d = difference(got, off < size ? data_.substr(off, len) : "");
  return d.empty() ? "" : "read mismatch: " + d;
}

std::string File::op_truncate(uint64_t n, std::string& what) {
  const uint64_t size = data_.size();
  const uint64_t to = pick_offset(std::min<uint64_t>(size * 2 + 10000, opt_.max_size));
  char buf[120];
  std::snprintf(buf, sizeof buf, "#%llu ftruncate %llu -> %llu", ull(n), ull(size), ull(to));
  what = buf;
  if (::ftruncate(fd_.get(), static_cast<off_t>(to)) != 0) return errstr("ftruncate", errno);
  data_.resize(to, '\0');
  return "";
}

std::string File::op_mmap_write(uint64_t n, std::string& what) {
  const uint64_t size = data_.size();
  if (size == 0) {
    what = "#" + std::to_string(n) + " mmap-write (empty file: nothing to map)";
    return "";
  }
  const uint64_t off = pick_offset(size - 1);
  const size_t len = std::min<uint64_t>(pick_len(), size - off);
  const bool sync = rng_() % 2;
  const std::string d = random_bytes(len, rng_());
  char buf[120];
  std::snprintf(buf, sizeof buf, "#%llu mmap-write off=%llu len=%zu%s", ull(n), ull(off), len, sync ? " msync" : "");
  what = buf;
  const uint64_t page = off & ~(kPage - 1);
  const size_t maplen = static_cast<size_t>(off + len - page);
  void* p = ::mmap(nullptr, maplen, PROT_READ | PROT_WRITE, MAP_SHARED, fd_.get(), static_cast<off_t>(page));
  if (p == MAP_FAILED) return errstr("mmap", errno);
  std::memcpy(static_cast<char*>(p) + (off - page), d.data(), len);
  const int r = sync ? ::msync(p, maplen, MS_SYNC) : 0;
  const int e = errno;
  ::munmap(p, maplen);
  if (r != 0) return errstr("msync", e);
  data_.replace(off, len, d);
  return "";
}

std::string File::op_mmap_read(uint64_t n, std::string& what) {
  const uint64_t size = data_.size();
  if (size == 0) {
    what = "#" + std::to_string(n) + " mmap-read (empty file: nothing to map)";
    return "";
  }
  const uint64_t off = pick_offset(size - 1);
  const size_t len = std::min<uint64_t>(pick_len(), size - off);
  char buf[120];
  std::snprintf(buf, sizeof buf, "#%llu mmap-read off=%llu len=%zu", ull(n), ull(off), len);
  what = buf;
  const uint64_t page = off & ~(kPage - 1);
  const size_t maplen = static_cast<size_t>(off + len - page);
  void* p = ::mmap(nullptr, maplen, PROT_READ, MAP_SHARED, fd_.get(), static_cast<off_t>(page));
  if (p == MAP_FAILED) return errstr("mmap", errno);
  std::string got(static_cast<char*>(p) + (off - page), len);
  ::munmap(p, maplen);
  std::string d = difference(got, data_.substr(off, len));
  return d.empty() ? "" : "mapped read mismatch: " + d;
}

// kind 0..15: 0-3 mode 0 or KEEP_SIZE, 4-9 PUNCH_HOLE, 10-15 ZERO_RANGE with or without KEEP_SIZE.
std::string File::op_fallocate(uint64_t n, std::string& what, unsigned kind) {
  const uint64_t size = data_.size();
  int mode;
  const char* name;
  if (kind < 4) {
    mode = kind % 2 ? FALLOC_FL_KEEP_SIZE : 0;
    name = kind % 2 ? "fallocate KEEP_SIZE" : "fallocate";
  } else if (kind < 10) {
    mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
    name = "punch-hole";
  } else {
    mode = FALLOC_FL_ZERO_RANGE | (kind % 2 ? FALLOC_FL_KEEP_SIZE : 0);
    name = kind % 2 ? "zero-range KEEP_SIZE" : "zero-range";
  }
  const uint64_t off = pick_offset(std::min(size + 8192, opt_.max_size));
  const size_t len = std::min<uint64_t>(pick_len() * (1 + rng_() % 3), opt_.max_size - off + 1);
  char buf[120];
  std::snprintf(buf, sizeof buf, "#%llu %s off=%llu len=%zu", ull(n), name, ull(off), len);
  what = buf;
  if (::fallocate(fd_.get(), mode, static_cast<off_t>(off), static_cast<off_t>(len)) != 0) {
    const int e = errno;
    return e == EOPNOTSUPP ? skip(name, e) : errstr(name, e);
  }
  const uint64_t end = off + len;
  if ((mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) && off < size)
    std::fill(data_.begin() + static_cast<std::ptrdiff_t>(off),
              data_.begin() + static_cast<std::ptrdiff_t>(std::min(end, size)), '\0');
  if (!(mode & FALLOC_FL_KEEP_SIZE) && end > size) data_.resize(end, '\0');
  return "";
}

// COLLAPSE_RANGE and INSERT_RANGE move every later block to another index: refused, the file untouched.
std::string File::op_refused(uint64_t n, std::string& what) {
  const bool collapse = rng_() % 2;
  const uint64_t off = (rng_() % (data_.size() / kPage + 1)) * kPage;
  const uint64_t len = kPage * (1 + rng_() % 4);
  const char* name = collapse ? "collapse-range" : "insert-range";
  char buf[120];
  std::snprintf(buf, sizeof buf, "#%llu %s off=%llu len=%llu (must be refused)", ull(n), name, ull(off), ull(len));
  what = buf;
  if (opt_.tolerate_unsupported) {
    ++unsupported_[std::string(name) + " (not tried)"];
    return "";
  }
  const int mode = collapse ? FALLOC_FL_COLLAPSE_RANGE : FALLOC_FL_INSERT_RANGE;
  if (::fallocate(fd_.get(), mode, static_cast<off_t>(off), static_cast<off_t>(len)) == 0)
    return std::string(name) + " succeeded; veilfs refuses it (EOPNOTSUPP)";
  return errno == EOPNOTSUPP ? "" : errstr(name, errno) + ", expected EOPNOTSUPP";
}

std::string File::op_copy_range(uint64_t n, std::string& what, File& peer) {
  const uint64_t src_size = peer.data_.size();
  const uint64_t src = src_size ? rng_() % src_size : 0;
  uint64_t dst = pick_offset(std::min(data_.size() + 8192, opt_.max_size));
  uint64_t len = std::min<uint64_t>({pick_len(), src_size - src, opt_.max_size - dst + 1});
  if (&peer == this && src < dst + len && dst < src + len) {
    dst = src + len;  // one file: the ranges may not overlap (EINVAL)
    len = dst > opt_.max_size ? 0 : std::min<uint64_t>(len, opt_.max_size - dst + 1);
  }
  char buf[160];
  std::snprintf(buf, sizeof buf, "#%llu copy_file_range from %s off=%llu to off=%llu len=%llu", ull(n),
                &peer == this ? "itself" : peer.path_.substr(peer.path_.rfind('/') + 1).c_str(), ull(src), ull(dst),
                ull(len));
  what = buf;
  if (len == 0) return "";
  const std::string d = peer.data_.substr(src, len);
  off_t in = static_cast<off_t>(src), out = static_cast<off_t>(dst);
  for (uint64_t done = 0; done < len;) {
    ssize_t r = ::copy_file_range(peer.fd_.get(), &in, fd_.get(), &out, len - done, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      const int e = errno;
      if (done == 0 && (e == EOPNOTSUPP || e == EXDEV || e == ENOSYS)) return skip("copy_file_range", e);
      return errstr("copy_file_range", e);
    }
    if (r == 0)
      return "copy_file_range stopped after " + std::to_string(done) + " of " + std::to_string(len) + " bytes";
    done += static_cast<uint64_t>(r);
  }
  if (data_.size() < dst + len) data_.resize(dst + len, '\0');
  data_.replace(dst, len, d);
  return "";
}

std::string File::op_direct_write(uint64_t n, std::string& what) {
  const uint64_t off = pick_offset(std::min(data_.size() + 8192, opt_.max_size));
  const size_t len = std::min<uint64_t>(pick_len(), opt_.max_size - off + 1);
  const size_t misalign = rng_() % kPage;
  const std::string d = random_bytes(len, rng_());
  char buf[120];
  std::snprintf(buf, sizeof buf, "#%llu O_DIRECT write off=%llu len=%zu buffer+%zu", ull(n), ull(off), len, misalign);
  what = buf;
  if (!direct_) return skip("O_DIRECT", EINVAL);
  DirectBuffer b(len, misalign);
  std::memcpy(b.p, d.data(), len);
  if (int e = pwrite_all(direct_.get(), b.p, len, off))
    return e == EINVAL ? skip("O_DIRECT write", e) : errstr("O_DIRECT pwrite", e);
  if (data_.size() < off + len) data_.resize(off + len, '\0');
  data_.replace(off, len, d);
  return "";
}

std::string File::op_direct_read(uint64_t n, std::string& what) {
  const uint64_t size = data_.size();
  const uint64_t off = pick_offset(size + 100);
  const size_t len = pick_len();
  const size_t misalign = rng_() % kPage;
  char buf[120];
  std::snprintf(buf, sizeof buf, "#%llu O_DIRECT read off=%llu len=%zu buffer+%zu", ull(n), ull(off), len, misalign);
  what = buf;
  if (!direct_) return skip("O_DIRECT", EINVAL);
  DirectBuffer b(len, misalign);
  size_t got = 0;
  if (int e = pread_all(direct_.get(), b.p, len, off, &got))
    return e == EINVAL ? skip("O_DIRECT read", e) : errstr("O_DIRECT pread", e);
  std::string d = difference(std::string(b.p, got), off < size ? data_.substr(off, len) : "");
  return d.empty() ? "" : "O_DIRECT read mismatch: " + d;
}

std::string File::op_fstat(uint64_t n, std::string& what) {
  what = "#" + std::to_string(n) + " fstat";
  struct stat st {};
  if (::fstat(fd_.get(), &st) != 0) return errstr("fstat", errno);
  if (static_cast<uint64_t>(st.st_size) != data_.size())
    return "st_size " + std::to_string(st.st_size) + ", expected " + std::to_string(data_.size());
  return "";
}

std::string File::op_fsync(uint64_t n, std::string& what) {
  const bool data_only = rng_() % 2;
  what = "#" + std::to_string(n) + (data_only ? " fdatasync" : " fsync");
  if ((data_only ? ::fdatasync(fd_.get()) : ::fsync(fd_.get())) != 0) return errstr("fsync", errno);
  return "";
}

RunReport run(const RunConfig& cfg) {
  RunReport rep;
  std::vector<std::unique_ptr<File>> files;
  for (unsigned i = 0; i < std::max(1u, cfg.files); ++i) {
    files.push_back(std::make_unique<File>(cfg.dir + "/fsx" + std::to_string(i), cfg.seed * 31 + i, cfg.options));
    if (std::string e = files.back()->open(); !e.empty()) {
      rep.error = files.back()->path() + ": " + e;
      return rep;
    }
  }
  auto name_of = [&](const File& f) { return f.path().substr(f.path().rfind('/') + 1); };
  std::mt19937_64 pick(cfg.seed);
  std::deque<std::string> recent;  // the last operations, printed on failure
  auto failure = [&](uint64_t n, const std::string& where, const std::string& err) {
    std::string trail;
    for (const auto& r : recent) trail += "  " + r + "\n";
    return "seed " + std::to_string(cfg.seed) + " (replay with VEILFS_EXERCISER_SEED=" + std::to_string(cfg.seed) +
           "), operation " + std::to_string(n) + ", " + where + ": " + err + "\nlast operations:\n" + trail;
  };
  using Clock = std::chrono::steady_clock;
  Clock::duration busy{};
  auto t0 = Clock::now();
  for (uint64_t n = 0; n < cfg.ops; ++n) {
    if (cfg.remount && cfg.remount_every && n > 0 && n % cfg.remount_every == 0) {
      busy += Clock::now() - t0;
      for (auto& f : files) f->close();
      if (std::string e = cfg.remount(); !e.empty()) {
        rep.error = failure(n, "remount", e);
        break;
      }
      ++rep.remounts;
      for (auto& f : files) {
        std::string e = f->verify_all();
        if (e.empty()) e = f->open();
        if (!e.empty()) rep.error = failure(n, name_of(*f) + " after remount " + std::to_string(rep.remounts), e);
      }
      if (!rep.error.empty()) break;
      t0 = Clock::now();
    }
    File& f = *files[pick() % files.size()];
    File& peer = *files[pick() % files.size()];
    std::string what;
    const auto s0 = Clock::now();
    std::string err = f.step(n, what, peer);
    // The kind is the word after "#N " (O_DIRECT and copy_file_range: two words).
    const size_t k0 = what.find(' ') + 1;
    size_t k1 = what.find(' ', k0);
    if (what.compare(k0, 8, "O_DIRECT") == 0) k1 = what.find(' ', k1 + 1);
    auto& kind = rep.kinds[what.substr(k0, k1 == std::string::npos ? std::string::npos : k1 - k0)];
    ++kind.first;
    kind.second += std::chrono::duration<double>(Clock::now() - s0).count();
    recent.push_back(name_of(f) + " " + what);
    if (recent.size() > 25) recent.pop_front();
    if (err.empty() && cfg.verify_every && n % cfg.verify_every == cfg.verify_every - 1) err = f.verify_all();
    rep.ops_done = n + 1;
    if (!err.empty()) {
      rep.error = failure(n, name_of(f), err);
      break;
    }
  }
  busy += Clock::now() - t0;
  rep.seconds = std::chrono::duration<double>(busy).count();
  for (auto& f : files) {
    f->close();
    if (rep.error.empty())
      if (std::string e = f->verify_all(); !e.empty())
        rep.error = failure(rep.ops_done, name_of(*f) + " at the end", e);
    for (const auto& [k, v] : f->unsupported()) rep.unsupported[k] += v;
    rep.files.emplace_back(f->path(), f->data());
  }
  return rep;
}

}  // namespace veiltest::fsx
