// Shared fixture of the veilkey tests: a scratch directory, passphrase files, and in-process checks of what
// the binary left on disk (through the core library, never through veilkey itself).
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tool_runner.hpp"
#include "veilfs/format/config.hpp"
#include "veilfs/layout/cipher_dir.hpp"
#include "veilfs/util/error.hpp"
#include "veilfs/util/io.hpp"
#include "veilfs/util/unique_fd.hpp"

namespace veil::test {

// Small Argon2 parameters: the suite runs under ASan too and must stay fast.
inline const std::vector<std::string> kFastKdf{"--kdf-memory", "65536", "--kdf-ops", "1"};

inline std::vector<std::string> cat(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// prefix + number, built with += (GCC 12 reports a false -Wrestrict for "literal" + std::to_string(n)).
inline std::string numbered(const char* prefix, size_t n) {
  std::string s = prefix;
  s += std::to_string(n);
  return s;
}

inline std::span<const uint8_t> bytes_of(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

class KeytoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "veilkey-test-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
    vol_ = root_ + "/vol";
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
  }

  // Writes a file in the scratch dir and returns its path.
  // Written to a temp name and renamed, so that a child still reading an earlier version never sees it half done.
  std::string write_file(const std::string& name, const std::string& contents) {
    std::string p = root_ + "/" + name, tmp = p + ".tmp";
    std::ofstream(tmp, std::ios::binary) << contents;
    std::filesystem::rename(tmp, p);
    return p;
  }
  std::string passfile(const std::string& pass) { return write_file("pass-" + pass, pass + "\n"); }

  // veilkey init with a passphrase from a file; returns the recovery code printed.
  std::string init_volume(const std::string& pass, std::vector<std::string> extra = {}) {
    auto r = run_veilkey(cat(cat({"init", vol_, "--passfile", passfile(pass)}, kFastKdf), extra));
    EXPECT_EQ(r.code, 0) << r.err;
    while (!r.out.empty() && r.out.back() == '\n') r.out.pop_back();
    return r.out;
  }

  format::VolumeConfig load_config() const {
    UniqueFd dir(::open(vol_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    return layout::load_config(dir.get());
  }
  std::string config_text() const {
    UniqueFd dir(::open(vol_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    auto b = read_small_file(dir.get(), "veilfs.conf", 1 << 20);
    return std::string(b.begin(), b.end());
  }
  // Whether the secret opens a slot of the config on disk (and the parameters authenticate).
  bool opens(const std::string& secret) const {
    auto cfg = load_config();
    try {
      cfg.unlock(bytes_of(secret));
      return true;
    } catch (const Error& e) {
      if (e.kind() == ErrorKind::WrongSecret) return false;
      throw;
    }
  }
  SecretBytes master_of(const std::string& secret) const { return load_config().unlock(bytes_of(secret)); }

  // Every byte of every file in the cipher dir, for "nothing secret on disk" checks.
  std::string all_cipher_dir_bytes() const {
    std::string all;
    for (const auto& e : std::filesystem::recursive_directory_iterator(vol_)) {
      if (!e.is_regular_file()) continue;
      std::ifstream f(e.path(), std::ios::binary);
      all += std::string(std::istreambuf_iterator<char>(f), {});
    }
    return all;
  }
  std::vector<std::string> cipher_dir_names() const {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(vol_)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }

  std::string root_, vol_;
};

}  // namespace veil::test
