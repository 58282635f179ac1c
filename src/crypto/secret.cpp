#include "veilfs/crypto/secret.hpp"

#include <sodium.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include <cstring>
#include <new>
#include <string>
#include <utility>

#include "veilfs/crypto/sodium.hpp"

namespace veil {

SecretBytes::SecretBytes(size_t size) : size_(size) {
  ensure_sodium();
  if (size == 0) return;
  data_ = static_cast<uint8_t*>(sodium_malloc(size));
  if (!data_) throw std::bad_alloc();
  sodium_memzero(data_, size);
}

SecretBytes::SecretBytes(std::span<const uint8_t> from) : SecretBytes(from.size()) {
  if (!from.empty()) std::memcpy(data_, from.data(), from.size());
}

SecretBytes::~SecretBytes() {
  if (data_) sodium_free(data_);  // sodium_free wipes before freeing
}

SecretBytes::SecretBytes(SecretBytes&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}

SecretBytes& SecretBytes::operator=(SecretBytes&& o) noexcept {
  if (this != &o) {
    if (data_) sodium_free(data_);
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
