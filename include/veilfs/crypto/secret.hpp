// Key material lives only in SecretBytes: sodium_malloc'd (guard pages, mlock'd where the limit allows),
// wiped and freed on destruction. Copying is explicit, never implicit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace veil {

class SecretBytes {
 public:
  SecretBytes() = default;
  explicit SecretBytes(size_t size);
  SecretBytes(std::span<const uint8_t> from);
  ~SecretBytes();
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;
  SecretBytes(SecretBytes&& o) noexcept;
  SecretBytes& operator=(SecretBytes&& o) noexcept;

  static SecretBytes random(size_t size);
  SecretBytes clone() const { return SecretBytes(span()); }

  uint8_t* data() noexcept { return data_; }
  const uint8_t* data() const noexcept { return data_; }
  size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  std::span<uint8_t> span() noexcept { return {data_, size_}; }
  std::span<const uint8_t> span() const noexcept { return {data_, size_}; }
  std::string_view view() const noexcept { return {reinterpret_cast<const char*>(data_), size_}; }
  bool equals(std::span<const uint8_t> other) const;  // constant time for equal lengths

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Whether key pages can be locked in RAM (sodium_malloc silently ignores mlock failures, so we probe).
// Returns an empty string when they can, otherwise a human-readable reason for a warning.
std::string_view memory_lock_problem();

// Keeps secrets out of core dumps: sets RLIMIT_CORE to 0 and PR_SET_DUMPABLE to 0. For the daemon and CLIs.
void disable_core_dumps();

}  // namespace veil
