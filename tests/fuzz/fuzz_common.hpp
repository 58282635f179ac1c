// Shared by the libFuzzer targets and the seed generator: fixed keys (so that seeds encrypted under them reach
// the code behind authentication) and a scratch volume for the targets that run fsck over a fuzzed tree.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "veilfs/content/content_file.hpp"
#include "veilfs/crypto/kdf.hpp"
#include "veilfs/names/link_codec.hpp"
#include "veilfs/names/name_transform.hpp"
#include "veilfs/util/error.hpp"
#include "veilfs/volume.hpp"

namespace veil::fuzz {

inline SecretBytes fixed_key(uint8_t tag) {
  SecretBytes k(32);
  for (size_t i = 0; i < k.size(); ++i) k.data()[i] = static_cast<uint8_t>(tag + i);
  return k;
}

struct Fixture {
  NameTransform names{fixed_key(1)};
  LinkCodec links{fixed_key(2)};
  XattrCodec xattrs{fixed_key(3)};
  std::shared_ptr<const ContentCipher> xchacha =
      std::make_shared<ContentCipher>(CipherId::XChaCha20Poly1305, format::kDefaultBlockSize, fixed_key(4));
  std::shared_ptr<const ContentCipher> aes =
      fastest_cipher() == CipherId::Aes256Gcm
          ? std::make_shared<ContentCipher>(CipherId::Aes256Gcm, format::kDefaultBlockSize, fixed_key(4))
          : xchacha;
  DirIv iv{};  // all zero: seeds are encrypted under it
};

inline Fixture& fixture() {
  static Fixture f;
  return f;
}

inline std::string_view as_text(std::span<const uint8_t> b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}
inline std::span<const uint8_t> as_bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// A volume in tmpfs (fast, and it keeps user xattrs), created once per process with a fixed passphrase.
// Between inputs everything but the config and the root IV is removed.
inline constexpr std::string_view kScratchPassphrase = "veilfs fuzz";

class ScratchVolume {
 public:
  ScratchVolume() {
    // run.sh names a directory it removes afterwards: libFuzzer may end without running static destructors.
    const char* env = std::getenv("VEILFS_FUZZ_SCRATCH");
    std::string base = env && *env ? env : std::filesystem::exists("/dev/shm") ? "/dev/shm" : "/tmp";
    std::filesystem::create_directories(base);
    dir_ = base + "/veilfs-fuzz-" + std::to_string(::getpid());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    CreateOptions opt;
    opt.cipher = CipherId::XChaCha20Poly1305;
    opt.kdf = kArgonTesting;
    Volume::create(dir_, as_bytes(kScratchPassphrase), opt);
    vol_ = Volume::open(dir_, as_bytes(kScratchPassphrase));
  }
  // Runs at exit, as a function-local static (libFuzzer ends with exit() after -max_total_time).
  ~ScratchVolume() {
    vol_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  static ScratchVolume& instance() {
    static ScratchVolume v;
    return v;
  }
  const Volume& vol() const { return *vol_; }
  const std::string& dir() const { return dir_; }
  // Empties the volume's root for the next input.
  void reset() const {
    for (const auto& e : std::filesystem::directory_iterator(dir_)) {
      auto n = e.path().filename().string();
      if (n == format::kConfigName || n == format::kDirIvName) continue;
      std::error_code ec;
      std::filesystem::remove_all(e.path(), ec);
    }
  }

 private:
  std::string dir_;
  std::unique_ptr<Volume> vol_;
};

// A backing name from fuzz bytes that the file system accepts (no '/', no NUL, not "." or "..", at most 255).
inline std::string sanitize_name(std::string_view raw) {
  std::string n(raw.substr(0, format::kMaxBackingNameSize));
  for (auto& c : n)
    if (c == '/' || c == '\0') c = '_';
  if (n.empty() || n == "." || n == "..") n = "_" + n;
  return n;
}

inline void put_file(int dirfd, const std::string& name, std::span<const uint8_t> data) {
  // O_NONBLOCK: an earlier record may have made this name a FIFO, which must not block the fuzzer.
  int fd = ::openat(dirfd, name.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600);
  if (fd < 0) return;
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  ::close(fd);
}

}  // namespace veil::fuzz
