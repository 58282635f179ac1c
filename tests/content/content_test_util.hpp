// Shared helpers for the content-engine tests: a scratch directory, backing-file access and engine factories.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "veilfs/content/content_file.hpp"
#include "veilfs/crypto/random.hpp"
#include "veilfs/util/error.hpp"
#include "veilfs/util/io.hpp"

namespace veil::testing {

// A fresh directory under the system temp dir, removed with everything in it.
class ScratchDir {
 public:
  ScratchDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "veilfs-test-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline UniqueFd open_rw(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd) throw std::runtime_error("open " + path + " failed");
  return fd;
}

inline std::vector<uint8_t> file_bytes(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw std::runtime_error("open " + path + " failed");
  std::vector<uint8_t> out(file_size(fd.get()));
  pread_full(fd.get(), out, 0);
  return out;
}

inline void put_file_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd) throw std::runtime_error("open " + path + " failed");
  pwrite_full(fd.get(), bytes, 0);
}

inline void truncate_file(const std::string& path, uint64_t size) {
  if (::truncate(path.c_str(), static_cast<off_t>(size)) != 0) throw std::runtime_error("truncate failed");
}

inline std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::vector<uint8_t> v(n);
  std::mt19937 rng(seed);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

inline std::shared_ptr<const ContentCipher> make_cipher(CipherId id, uint32_t block_size = 4096) {
  return std::make_shared<ContentCipher>(id, block_size, SecretBytes::random(32));
}

inline std::unique_ptr<ContentFile> open_content(const std::shared_ptr<const ContentCipher>& c,
                                                 const std::string& path) {
  return std::make_unique<ContentFile>(c, open_rw(path), "test");
}

// Reads the whole plaintext through the engine (throws what the engine throws).
inline std::vector<uint8_t> read_all(ContentFile& f) {
  std::vector<uint8_t> out(f.size());
  size_t n = f.read(0, out);
  out.resize(n);
  return out;
}

inline std::vector<uint8_t> read_range(ContentFile& f, uint64_t off, size_t len) {
  std::vector<uint8_t> out(len);
  out.resize(f.read(off, out));
  return out;
}

// Runs fn and reports how it failed: the error kind, or nullopt if it did not throw a veil::Error.
inline std::optional<ErrorKind> error_kind_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.kind();
  }
  return std::nullopt;
}

inline std::string cipher_label(CipherId id) { return std::string(cipher_name(id)); }

}  // namespace veil::testing
