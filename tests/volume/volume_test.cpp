// Volume: create and open, wrong secret, refusing a non-empty directory, master-key open, independent subkeys.
#include "veilfs/volume.hpp"

#include <fcntl.h>

#include <algorithm>

#include "../content/content_test_util.hpp"
#include "veilfs/layout/cipher_dir.hpp"

namespace veil::testing {
namespace {

std::span<const uint8_t> bytes_of(std::string_view s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }

CreateOptions fast(CipherId cipher = CipherId::XChaCha20Poly1305) {
  CreateOptions o;
  o.cipher = cipher;
  o.kdf = kArgonTesting;
  return o;
}

TEST(Volume, CreateThenOpenWithTheSamePassphrase) {
  ScratchDir d;
  SecretBytes master = Volume::create(d.path(), bytes_of("pw"), fast());
  EXPECT_EQ(master.size(), format::kMasterKeySize);
  auto v = Volume::open(d.path(), bytes_of("pw"));
  EXPECT_TRUE(v->master_key().equals(master.span()));
  EXPECT_EQ(v->config().cipher, CipherId::XChaCha20Poly1305);
  EXPECT_EQ(layout::read_dir_iv(v->root_fd()), v->root_iv());
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(d.path())) names.push_back(e.path().filename());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"veilfs.conf", "veilfs.diriv", "veilfs.params"}));
}

TEST(Volume, WrongPassphraseIsWrongSecret) {
  ScratchDir d;
  Volume::create(d.path(), bytes_of("pw"), fast());
  EXPECT_EQ(error_kind_of([&] { Volume::open(d.path(), bytes_of("pW")); }), ErrorKind::WrongSecret);
}

TEST(Volume, OpenWithoutConfigIsNotFound) {
  ScratchDir d;
  EXPECT_EQ(error_kind_of([&] { Volume::open(d.path(), bytes_of("pw")); }), ErrorKind::NotFound);
}

TEST(Volume, CreateRefusesANonEmptyDirectory) {
  ScratchDir d;
  put_file_bytes(d.file("existing"), {1});
  EXPECT_TRUE(error_kind_of([&] { Volume::create(d.path(), bytes_of("pw"), fast()); }).has_value());
  EXPECT_FALSE(std::filesystem::exists(d.file("veilfs.conf")));
}

TEST(Volume, OpenWithMasterKeyAndRejectAWrongOne) {
  ScratchDir d;
  SecretBytes master = Volume::create(d.path(), bytes_of("pw"), fast());
  auto v = Volume::open_with_master_key(d.path(), master);
  EXPECT_EQ(v->root_iv(), Volume::open(d.path(), bytes_of("pw"))->root_iv());
  EXPECT_EQ(error_kind_of([&] { Volume::open_with_master_key(d.path(), SecretBytes::random(32)); }),
            ErrorKind::Corrupt);
}

TEST(Volume, SubkeysAreIndependentPerVolumeAndPurpose) {
  ScratchDir d1, d2;
  Volume::create(d1.path(), bytes_of("pw"), fast());
  Volume::create(d2.path(), bytes_of("pw"), fast());
  auto a = Volume::open(d1.path(), bytes_of("pw")), b = Volume::open(d2.path(), bytes_of("pw"));
  EXPECT_NE(a->root_iv(), b->root_iv());
  EXPECT_NE(a->names().encrypt(a->root_iv(), "x"), b->names().encrypt(a->root_iv(), "x"));
  EXPECT_EQ(b->links().decrypt(a->links().encrypt("t")), std::nullopt);
  // Files of one volume do not decrypt under another's content key.
  auto f = open_content(a->content(), d1.file("file"));
  f->write(0, random_bytes(100, 1));
  auto g = open_content(b->content(), d1.file("file"));
  EXPECT_EQ(error_kind_of([&] { read_all(*g); }), ErrorKind::Auth);
}

TEST(Volume, DirIvFallsBackToDerivationWhenTheFileIsMissing) {
  ScratchDir d;
  Volume::create(d.path(), bytes_of("pw"), fast());
  auto v = Volume::open(d.path(), bytes_of("pw"));
  ASSERT_EQ(::mkdir(d.file("sub").c_str(), 0700), 0);
  UniqueFd sub(::open(d.file("sub").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  std::string enc = v->names().encrypt(v->root_iv(), "sub");
  EXPECT_EQ(v->dir_iv(sub.get(), &v->root_iv(), enc), v->names().derive_child_iv(v->root_iv(), enc));
  DirIv stored;
  random_fill(stored);
  layout::write_dir_iv(sub.get(), stored);  // a stored IV (e.g. kept across a rename) wins over derivation
  EXPECT_EQ(v->dir_iv(sub.get(), &v->root_iv(), enc), stored);
}

TEST(Volume, BothCiphersCreateUsableVolumes) {
  for (CipherId c : {CipherId::XChaCha20Poly1305, CipherId::Aes256Gcm}) {
    ScratchDir d;
    Volume::create(d.path(), bytes_of("pw"), fast(c));
    auto v = Volume::open(d.path(), bytes_of("pw"));
    EXPECT_EQ(v->config().cipher, c);
    auto f = open_content(v->content(), d.file("x"));
    auto data = random_bytes(9000, 2);
    f->write(0, data);
    EXPECT_EQ(read_all(*open_content(v->content(), d.file("x"))), data);
  }
}

}  // namespace
}  // namespace veil::testing
