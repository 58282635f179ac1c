// A real volume in a temporary directory, filled through the engines exactly as the mount lays it out
// (encrypted names under each directory's IV, long names with sidecars, derived and stored directory IVs,
// encrypted symlink targets and xattrs), so that fsck tests can damage it deterministically.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "fsck/checker.hpp"
#include "veilfs/layout/cipher_dir.hpp"
#include "veilfs/util/error.hpp"
#include "veilfs/util/io.hpp"
#include "veilfs/volume.hpp"

namespace veil::fsck::testing {

inline std::span<const uint8_t> passphrase() {
  static const std::string p = "fsck test passphrase";
  return {reinterpret_cast<const uint8_t*>(p.data()), p.size()};
}

// Deterministic bytes: the same seed always gives the same contents.
inline std::vector<uint8_t> pattern(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> out(n);
  for (auto& b : out) b = static_cast<uint8_t>(rng());
  return out;
}

inline std::vector<uint8_t> read_all(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw std::runtime_error("open " + path);
  std::vector<uint8_t> out(file_size(fd.get()));
  pread_full(fd.get(), out, 0);
  return out;
}
inline void write_all(const std::string& path, std::span<const uint8_t> data) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd) throw std::runtime_error("create " + path);
  pwrite_full(fd.get(), data, 0);
}

class TestVolume {
 public:
  explicit TestVolume(CipherId cipher = CipherId::XChaCha20Poly1305) {
    char tmpl[] = "/tmp/veilfs-fsck-XXXXXX";
    if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp");
    dir_ = tmpl;
    create(cipher);
  }
  // A volume in an existing empty directory that outlives this object (for checked-in fixtures).
  TestVolume(std::string dir, CipherId cipher) : dir_(std::move(dir)), keep_(true) { create(cipher); }
  ~TestVolume() {
    vol_.reset();
    std::error_code ec;
    if (!keep_) std::filesystem::remove_all(dir_, ec);
  }
  TestVolume(const TestVolume&) = delete;
  TestVolume& operator=(const TestVolume&) = delete;

 private:
  void create(CipherId cipher) {
    CreateOptions opt;
    opt.cipher = cipher;
    opt.kdf = kArgonTesting;
    Volume::create(dir_, passphrase(), opt);
    vol_ = Volume::open(dir_, passphrase());
  }

 public:
  const std::string& dir() const { return dir_; }
  const Volume& vol() const { return *vol_; }
  std::string abs(const std::string& cipher_path) const { return dir_ + "/" + cipher_path; }

  // Plain path -> cipher path relative to dir() ("" for the root). Parents must exist.
  std::string cipher_path(const std::string& plain) const {
    Where w = resolve_parent(plain);
    return join(w.cipher_dir, layout::backing_name(w.encoded));
  }
  // Encoded (full) name of the last component of a plain path.
  std::string encoded_name(const std::string& plain) const { return resolve_parent(plain).encoded; }

  std::string mkdir(const std::string& plain) {
    Where w = resolve_parent(plain);
    std::string backing = place_name(w);
    if (::mkdirat(w.fd.get(), backing.c_str(), 0700) != 0) throw std::runtime_error("mkdirat");
    UniqueFd child(::openat(w.fd.get(), backing.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    layout::write_dir_iv(child.get(), vol_->names().derive_child_iv(w.iv, w.encoded));
    return join(w.cipher_dir, backing);
  }

  std::string write_file(const std::string& plain, std::span<const uint8_t> data) {
    Where w = resolve_parent(plain);
    std::string backing = place_name(w);
    UniqueFd fd(::openat(w.fd.get(), backing.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!fd) throw std::runtime_error("create file");
    ContentFile f(vol_->content(), std::move(fd));
    f.write(0, data);
    return join(w.cipher_dir, backing);
  }

  // The plaintext of a file, read through the content engine (throws what a read would).
  std::vector<uint8_t> read_file(const std::string& plain) const {
    UniqueFd fd(::open(abs(cipher_path(plain)).c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) throw std::runtime_error("open file");
    ContentFile f(vol_->content(), std::move(fd));
    std::vector<uint8_t> out(f.size());
    out.resize(f.read(0, out));
    return out;
  }

  // A file of `size` plaintext bytes that is all hole except `data` written at `off`.
  std::string write_sparse(const std::string& plain, uint64_t size, uint64_t off, std::span<const uint8_t> data) {
    Where w = resolve_parent(plain);
    std::string backing = place_name(w);
    UniqueFd fd(::openat(w.fd.get(), backing.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!fd) throw std::runtime_error("create file");
    ContentFile f(vol_->content(), std::move(fd));
    f.truncate(size);
    if (!data.empty()) f.write(off, data);
    return join(w.cipher_dir, backing);
  }

  std::string symlink(const std::string& plain, const std::string& target) {
    Where w = resolve_parent(plain);
    std::string backing = place_name(w);
    std::string stored = vol_->links().encrypt(target);
    if (stored.size() > format::kMaxInlineLinkSize) {
      std::string side = std::string(format::kLongLinkPrefix) + backing;
      layout::replace_file(w.fd.get(), side,
                           std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(stored.data()), stored.size()),
                           0600);
      stored = std::string(format::kLongLinkMarker);
    }
    if (::symlinkat(stored.c_str(), w.fd.get(), backing.c_str()) != 0) throw std::runtime_error("symlinkat");
    return join(w.cipher_dir, backing);
  }

  void set_xattr(const std::string& plain, const std::string& name, std::span<const uint8_t> value) {
    std::string path = abs(cipher_path(plain));
    std::string backing = *vol_->xattrs().encrypt_name(name);
    auto stored = vol_->xattrs().encrypt_value(backing, value);
    if (::lsetxattr(path.c_str(), backing.c_str(), stored.data(), stored.size(), 0) != 0)
      throw std::runtime_error("lsetxattr");
  }

  Report check(Options opt = {}) const {
    Checker c(*vol_, std::move(opt));
    return c.run();
  }

 private:
  struct Where {
    UniqueFd fd;             // the parent directory
    DirIv iv{};              // its IV
    std::string cipher_dir;  // relative cipher path of the parent
    std::string encoded;     // the last component, encrypted
  };

  static std::string join(const std::string& a, const std::string& b) { return a.empty() ? b : a + "/" + b; }

  Where resolve_parent(const std::string& plain) const {
    Where w;
    w.fd = UniqueFd(::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    w.iv = vol_->root_iv();
    std::vector<std::string> parts;
    for (const auto& p : std::filesystem::path(plain)) {
      std::string s = p.string();
      if (!s.empty() && s != "/") parts.push_back(s);
    }
    if (parts.empty()) throw std::runtime_error("no name in path");
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      std::string enc = vol_->names().encrypt(w.iv, parts[i]);
      std::string backing = layout::backing_name(enc);
      UniqueFd next(::openat(w.fd.get(), backing.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      if (!next) throw std::runtime_error("no such directory: " + parts[i]);
      w.iv = vol_->dir_iv(next.get(), &w.iv, enc);
      w.fd = std::move(next);
      w.cipher_dir = join(w.cipher_dir, backing);
    }
    w.encoded = vol_->names().encrypt(w.iv, parts.back());
    return w;
  }

  // Writes the long-name sidecar if the name needs one; returns the backing name.
  std::string place_name(const Where& w) const {
    std::string backing = layout::backing_name(w.encoded);
    if (layout::needs_long_name(w.encoded))
      layout::replace_file(
          w.fd.get(), layout::name_sidecar_of(backing),
          std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(w.encoded.data()), w.encoded.size()), 0400);
    return backing;
  }

  std::string dir_;
  bool keep_ = false;
  std::unique_ptr<Volume> vol_;
};

}  // namespace veil::fsck::testing
