// Compatibility fixtures (tests/fixtures/v1): volumes made once, with fixed inputs, by an earlier veilfs and
// checked in. Every later version must open them with the recorded passphrase and read every name, file and
// symlink exactly as the manifest says. Never regenerate a checked-in fixture: add a new one instead.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>

#include "../content/content_test_util.hpp"
#include "veilfs/crypto/encoding.hpp"
#include "veilfs/crypto/kdf.hpp"
#include "veilfs/crypto/sodium.hpp"
#include "veilfs/layout/cipher_dir.hpp"
#include "veilfs/volume.hpp"

namespace veil::testing {
namespace {

// One line of the manifest: kind, plain path, size, SHA-256 of the contents (files) or target (symlinks).
struct Entry {
  std::string kind;
  uint64_t size = 0;
  std::string sha256;
  bool operator==(const Entry&) const = default;
};
using Tree = std::map<std::string, Entry>;

std::string sha256_hex(std::span<const uint8_t> data) {
  std::array<uint8_t, 32> d{};
  sha256(d, {data});
  return hex_encode(d);
}
std::span<const uint8_t> bytes_of(std::string_view s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Tree parse_manifest(const std::string& text) {
  Tree t;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> f;
    size_t p = 0;
    for (size_t tab; (tab = line.find('\t', p)) != std::string::npos; p = tab + 1) f.push_back(line.substr(p, tab - p));
    f.push_back(line.substr(p));
    if (f.size() != 4) throw std::runtime_error("bad manifest line: " + line);
    t[f[1]] = Entry{f[0], f[2] == "-" ? 0 : std::stoull(f[2]), f[3]};
  }
  return t;
}

std::string format_manifest(const Tree& t) {
  std::string out = "# kind\tplain path\tsize\tsha256 (contents of a file, target of a symlink)\n";
  for (const auto& [path, e] : t)
    out += e.kind + "\t" + path + "\t" + (e.kind == "dir" ? "-" : std::to_string(e.size)) + "\t" +
           (e.kind == "dir" ? "-" : e.sha256) + "\n";
  return out;
}

std::vector<std::string> list_dir(int dirfd) {
  UniqueFd dup(::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  DIR* d = ::fdopendir(dup.release());
  if (!d) throw std::runtime_error("fdopendir failed");
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

// Decrypts a whole cipher tree the way a reader written from docs/FORMAT.md would, failing on anything unexpected.
void walk(const Volume& v, int dirfd, const DirIv& iv, const std::string& prefix, Tree& out) {
  for (const std::string& name : list_dir(dirfd)) {
    SCOPED_TRACE(prefix + " / " + name);
    if (name == format::kDirIvName) continue;
    if (prefix.empty() && name == format::kConfigName) continue;
    if (name.rfind(format::kLongLinkPrefix, 0) == 0) continue;  // a long symlink's target, read with the link
    if (name.size() > format::kLongNameSuffix.size() &&
        name.compare(name.size() - format::kLongNameSuffix.size(), std::string::npos, format::kLongNameSuffix) == 0 &&
        layout::is_long_name(name.substr(0, name.size() - format::kLongNameSuffix.size())))
      continue;  // a sidecar, read with its entry
    std::string encoded = name;
    if (layout::is_long_name(name)) {
      auto side = read_small_file(dirfd, layout::name_sidecar_of(name), format::kMaxSidecarSize);
      encoded.assign(side.begin(), side.end());
      ASSERT_EQ(layout::long_name_for(encoded), name) << "sidecar does not match its long name";
      ASSERT_TRUE(layout::needs_long_name(encoded));
    } else {
      ASSERT_FALSE(layout::is_reserved(name)) << "unexpected reserved name in the cipher dir";
    }
    auto plain = v.names().decrypt(iv, encoded);
    ASSERT_TRUE(plain.has_value()) << "name does not decrypt";
    const std::string path = prefix + "/" + *plain;
    struct stat st {};
    ASSERT_EQ(::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW), 0);
    if (S_ISDIR(st.st_mode)) {
      UniqueFd sub(::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      ASSERT_TRUE(sub);
      auto stored = layout::read_dir_iv(sub.get());
      ASSERT_TRUE(stored.has_value()) << "fixture directories keep their IV file";
      EXPECT_EQ(*stored, v.names().derive_child_iv(iv, encoded)) << "IV is the derived one";
      EXPECT_EQ(v.dir_iv(sub.get(), &iv, encoded), *stored);
      out[path] = Entry{"dir", 0, "-"};
      walk(v, sub.get(), *stored, path, out);
    } else if (S_ISREG(st.st_mode)) {
      UniqueFd fd(::openat(dirfd, name.c_str(), O_RDONLY | O_CLOEXEC));
      ASSERT_TRUE(fd);
      ContentFile f(v.content(), std::move(fd), "fixture");
      auto data = read_all(f);
      ASSERT_EQ(data.size(), f.size());
      EXPECT_EQ(f.first_bad_block(), std::nullopt);
      out[path] = Entry{"file", data.size(), sha256_hex(data)};
    } else if (S_ISLNK(st.st_mode)) {
      std::string stored(8192, '\0');
      ssize_t n = ::readlinkat(dirfd, name.c_str(), stored.data(), stored.size());
      ASSERT_GT(n, 0);
      stored.resize(static_cast<size_t>(n));
      if (stored == format::kLongLinkMarker) {
        auto side = read_small_file(dirfd, std::string(format::kLongLinkPrefix) + name, 16384);
        stored.assign(side.begin(), side.end());
      }
      auto target = v.links().decrypt(stored);
      ASSERT_TRUE(target.has_value()) << "symlink target does not decrypt";
      out[path] = Entry{"symlink", target->size(), sha256_hex(bytes_of(*target))};
    } else {
      ADD_FAILURE() << "unexpected file type";
    }
  }
}

std::string fixture_dir(const std::string& cipher) { return std::string(VEILFS_FIXTURES_DIR) + "/v1/" + cipher; }

class FixtureV1 : public ::testing::TestWithParam<CipherId> {};

TEST_P(FixtureV1, OpensWithItsPassphraseAndReadsEveryEntryExactly) {
  if (GetParam() == CipherId::Aes256Gcm && !aes256gcm_available()) {
    std::fprintf(stderr, "\n!!! SKIPPING the AES-256-GCM fixture: this CPU has no AES-NI/PCLMUL !!!\n\n");
    GTEST_SKIP() << "no AES-NI on this CPU";
  }
  const std::string dir = fixture_dir(std::string(cipher_name(GetParam())));
  const std::string pass = read_text(dir + "/passphrase");
  const Tree expect = parse_manifest(read_text(dir + "/manifest.tsv"));
  ASSERT_GE(expect.size(), 8u);

  auto v = Volume::open(dir + "/cipher", bytes_of(pass));
  EXPECT_EQ(v->config().version, 1u);
  EXPECT_EQ(v->config().cipher, GetParam());
  EXPECT_EQ(v->config().block_size, 4096u);
  EXPECT_EQ(layout::read_dir_iv(v->root_fd()), v->root_iv());
  Tree got;
  walk(*v, v->root_fd(), v->root_iv(), "", got);
  EXPECT_EQ(format_manifest(got), format_manifest(expect));

  EXPECT_EQ(error_kind_of([&] { Volume::open(dir + "/cipher", bytes_of(pass + "x")); }), ErrorKind::WrongSecret);
}

INSTANTIATE_TEST_SUITE_P(Ciphers, FixtureV1, ::testing::Values(CipherId::XChaCha20Poly1305, CipherId::Aes256Gcm),
                         [](const auto& info) { return std::string(cipher_name(info.param)); });

// ---- The generator. Run once per new fixture version, then check the result in:
//   VEILFS_FIXTURE_OUT=/tmp/fx veilfs_unit_tests --gtest_also_run_disabled_tests --gtest_filter='*GenerateV1*'
// It refuses to write into an existing directory, so a checked-in fixture is never overwritten.

void make_fixture(const std::string& out, CipherId cipher) {
  const std::string pass = "veilfs fixture v1 passphrase";
  const std::string cdir = out + "/cipher";
  std::filesystem::create_directories(cdir);
  CreateOptions opt;
  opt.cipher = cipher;
  opt.kdf = kArgonTesting;
  Volume::create(cdir, bytes_of(pass), opt);
  auto v = Volume::open(cdir, bytes_of(pass));
  Tree manifest;

  auto add_file = [&](int dirfd, const DirIv& iv, const std::string& prefix, const std::string& plain,
                      const std::vector<std::pair<uint64_t, std::vector<uint8_t>>>& writes) {
    std::string enc = v->names().encrypt(iv, plain);
    std::string backing = layout::backing_name(enc);
    if (layout::needs_long_name(enc))
      layout::replace_file(dirfd, layout::name_sidecar_of(backing), bytes_of(enc), 0444);
    UniqueFd fd(::openat(dirfd, backing.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    ASSERT_TRUE(fd);
    ContentFile f(v->content(), std::move(fd), "fixture");
    std::vector<uint8_t> ref;
    for (const auto& [off, data] : writes) {
      f.write(off, data);
      if (ref.size() < off + data.size()) ref.resize(off + data.size(), 0);
      std::copy(data.begin(), data.end(), ref.begin() + static_cast<std::ptrdiff_t>(off));
    }
    manifest[prefix + "/" + plain] = Entry{"file", ref.size(), sha256_hex(ref)};
  };
  auto add_dir = [&](int dirfd, const DirIv& iv, const std::string& prefix, const std::string& plain) {
    std::string enc = v->names().encrypt(iv, plain);
    std::string backing = layout::backing_name(enc);
    EXPECT_EQ(::mkdirat(dirfd, backing.c_str(), 0755), 0);
    UniqueFd sub(::openat(dirfd, backing.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    DirIv child = v->names().derive_child_iv(iv, enc);
    layout::write_dir_iv(sub.get(), child);
    manifest[prefix + "/" + plain] = Entry{"dir", 0, "-"};
    return std::make_pair(std::move(sub), child);
  };
  auto add_link = [&](int dirfd, const DirIv& iv, const std::string& prefix, const std::string& plain,
                      const std::string& target) {
    std::string backing = layout::backing_name(v->names().encrypt(iv, plain));
    std::string stored = v->links().encrypt(target);
    if (stored.size() > format::kMaxInlineLinkSize) {
      layout::replace_file(dirfd, std::string(format::kLongLinkPrefix) + backing, bytes_of(stored), 0444);
      stored = format::kLongLinkMarker;
    }
    EXPECT_EQ(::symlinkat(stored.c_str(), dirfd, backing.c_str()), 0);
    manifest[prefix + "/" + plain] = Entry{"symlink", target.size(), sha256_hex(bytes_of(target))};
  };
  auto text = [](std::string_view s) { return std::vector<uint8_t>(s.begin(), s.end()); };
  auto pattern = [](size_t n, uint32_t seed) { return random_bytes(n, seed); };

  const int root = v->root_fd();
  const DirIv& riv = v->root_iv();
  add_file(root, riv, "", "empty.txt", {});
  add_file(root, riv, "", "hello.txt", {{0, text("Hello, veilfs!\n")}});
  add_file(root, riv, "", "one-block.bin", {{0, pattern(4096, 1)}});
  // Several blocks with a hole (blocks 2..9 never written) and a short final block.
  add_file(root, riv, "", "sparse.bin", {{0, pattern(5000, 2)}, {10 * 4096 + 100, pattern(3000, 3)}});
  add_file(root, riv, "", "three-blocks-and-a-bit.bin", {{0, pattern(3 * 4096 + 17, 4)}});
  add_file(root, riv, "", "Grüße, 世界.txt", {{0, text("UTF-8 names survive: Grüße, 世界\n")}});
  std::string long_name;
  while (long_name.size() < 200) long_name += "a very long file name ";
  long_name += "ends here";
  add_file(root, riv, "", long_name, {{0, text("stored under a hashed name with a sidecar\n")}});
  add_link(root, riv, "", "link-to-hello", "hello.txt");
  std::string long_target;
  while (long_target.size() < 3500) long_target += "../long/symlink/target/";
  add_link(root, riv, "", "long-link", long_target);
  auto [docs, docs_iv] = add_dir(root, riv, "", "docs");
  add_file(docs.get(), docs_iv, "/docs", "nested.md", {{0, text("# Nested\n\nIn a subdirectory with its own IV.\n")}});
  add_file(docs.get(), docs_iv, "/docs", "hello.txt", {{0, text("same name, other directory\n")}});
  auto [deeper, deeper_iv] = add_dir(docs.get(), docs_iv, "/docs", "deeper");
  add_file(deeper.get(), deeper_iv, "/docs/deeper", "empty-too", {});

  std::ofstream(out + "/passphrase", std::ios::binary) << pass;
  std::ofstream(out + "/manifest.tsv", std::ios::binary) << format_manifest(manifest);
}

TEST(FixtureGenerator, DISABLED_GenerateV1) {
  const char* out = std::getenv("VEILFS_FIXTURE_OUT");
  ASSERT_NE(out, nullptr) << "set VEILFS_FIXTURE_OUT to a new directory";
  ASSERT_FALSE(std::filesystem::exists(out)) << "refusing to overwrite " << out;
  for (CipherId c : {CipherId::XChaCha20Poly1305, CipherId::Aes256Gcm})
    make_fixture(std::string(out) + "/" + std::string(cipher_name(c)), c);
}

}  // namespace
}  // namespace veil::testing
