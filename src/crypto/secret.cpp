#include "veilfs/crypto/secret.hpp"

#include <sodium.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "veilfs/crypto/sodium.hpp"

namespace veil {

namespace {

// Small secrets (keys, AES-GCM states, HKDF intermediates) come from slots carved out of large sodium_malloc'd
// chunks: one sodium_malloc costs about ten system calls (mmap, mprotect guard pages, mlock, madvise), and a
// per-file key needs four of them, which made the first open of every file cost ~250 us. Chunks are locked in
// RAM like any sodium_malloc memory, and a slot is wiped when it is released. Chunks are never returned.
class SecretPool {
 public:
  static constexpr size_t kSlot = 1024;  // multiple of 16: AES-GCM state alignment
  static constexpr size_t kSlotsPerChunk = 64;

  void* acquire() {
    std::lock_guard lk(mu_);
    if (free_.empty()) {
      // A multiple of the page size, so sodium_malloc's result is page-aligned and every slot 16-aligned.
      auto* chunk = static_cast<uint8_t*>(sodium_malloc(kSlot * kSlotsPerChunk));
      if (!chunk) throw std::bad_alloc();
      chunks_.push_back(chunk);
      for (size_t i = 0; i < kSlotsPerChunk; ++i) free_.push_back(chunk + i * kSlot);
    }
    void* p = free_.back();
    free_.pop_back();
    return p;
  }
  void release(void* p) {
    sodium_memzero(p, kSlot);
    std::lock_guard lk(mu_);
    free_.push_back(p);
  }

 private:
  std::mutex mu_;
  std::vector<void*> free_;
  std::vector<void*> chunks_;  // kept reachable for the life of the process
};

SecretPool& pool() {
  static SecretPool* p = new SecretPool;  // never destroyed: secrets may be released during static destruction
  return *p;
}

uint8_t* secret_alloc(size_t size) {
  if (size <= SecretPool::kSlot) return static_cast<uint8_t*>(pool().acquire());
  auto* p = static_cast<uint8_t*>(sodium_malloc(size));
  if (!p) throw std::bad_alloc();
  return p;
}

void secret_free(uint8_t* p, size_t size) {
  if (!p) return;
  if (size <= SecretPool::kSlot)
    pool().release(p);
  else
    sodium_free(p);  // sodium_free wipes before freeing
}

}  // namespace

SecretBytes::SecretBytes(size_t size) : size_(size) {
  ensure_sodium();
  if (size == 0) return;
  data_ = secret_alloc(size);
  sodium_memzero(data_, size);
}

SecretBytes::SecretBytes(std::span<const uint8_t> from) : SecretBytes(from.size()) {
  if (!from.empty()) std::memcpy(data_, from.data(), from.size());
}

SecretBytes::~SecretBytes() { secret_free(data_, size_); }

SecretBytes::SecretBytes(SecretBytes&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}

SecretBytes& SecretBytes::operator=(SecretBytes&& o) noexcept {
  if (this != &o) {
    secret_free(data_, size_);
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}

SecretBytes SecretBytes::random(size_t size) {
  SecretBytes s(size);
  randombytes_buf(s.data(), size);
  return s;
}

bool SecretBytes::equals(std::span<const uint8_t> other) const {
  return other.size() == size_ && (size_ == 0 || sodium_memcmp(data_, other.data(), size_) == 0);
}

std::string_view memory_lock_problem() {
  static const std::string problem = [] {
    ensure_sodium();
    void* page = sodium_malloc(4096);
    if (!page) return std::string("cannot allocate secure memory");
    int rc = sodium_mlock(page, 4096);
    if (rc == 0) sodium_munlock(page, 4096);
    sodium_free(page);
    if (rc == 0) return std::string();
    struct rlimit rl {};
    getrlimit(RLIMIT_MEMLOCK, &rl);
    return "key memory cannot be locked in RAM (RLIMIT_MEMLOCK=" + std::to_string(rl.rlim_cur) +
           "); keys may be swapped to disk";
  }();
  return problem;
}

void disable_core_dumps() {
  struct rlimit rl {
    0, 0
  };
  setrlimit(RLIMIT_CORE, &rl);
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

}  // namespace veil
