// Writes the initial corpus of every fuzz target (tests/fuzz/corpus/<target>/seed-*), deterministically apart from
// random nonces: valid inputs under the fixture's keys, so that fuzzing starts past authentication.
// Usage: veilfs_fuzz_seed_gen <corpus dir>. The corpus is checked in; this is for regenerating it.
#include <sys/mman.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "fuzz_common.hpp"
#include "veilfs/crypto/encoding.hpp"
#include "veilfs/format/config.hpp"
#include "veilfs/layout/cipher_dir.hpp"
#include "veilfs/util/io.hpp"

using namespace veil;
namespace fs = std::filesystem;

namespace {

fs::path g_root;

void seed(const std::string& target, const std::string& name, std::string_view bytes) {
  fs::create_directories(g_root / target);
  std::ofstream(g_root / target / ("seed-" + name), std::ios::binary).write(bytes.data(), bytes.size());
}
void seed(const std::string& target, const std::string& name, std::span<const uint8_t> bytes) {
  seed(target, name, fuzz::as_text(bytes));
}

std::string content_file(bool aes, const std::function<void(ContentFile&)>& fill) {
  auto& fx = fuzz::fixture();
  int fd = ::memfd_create("seed", MFD_CLOEXEC);
  ContentFile f(aes ? fx.aes : fx.xchacha, UniqueFd(::dup(fd)));
  fill(f);
  std::string out(1, static_cast<char>(aes ? 1 : 0));
  std::vector<uint8_t> b(file_size(fd));
  pread_full(fd, b, 0);
  ::close(fd);
  return out + std::string(b.begin(), b.end());
}

std::string record(uint8_t type, uint8_t variant, std::string_view name, std::string_view content) {
  std::string r;
  r += static_cast<char>(type | (variant << 3));
  r += static_cast<char>(name.size());
  r += name;
  r += static_cast<char>(content.size() & 0xff);
  r += static_cast<char>(content.size() >> 8);
  r += content;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  g_root = argv[1];
  auto& fx = fuzz::fixture();

  // config
  {
    format::VolumeConfig c;
    for (size_t i = 0; i < c.volume_id.size(); ++i) c.volume_id[i] = static_cast<uint8_t>(i);
    c.features = format::VolumeConfig::default_features();
    SecretBytes master = fuzz::fixed_key(9);
    c.slots.push_back(c.make_slot(master, fuzz::as_bytes("pass"), format::SlotKind::Passphrase, kArgonTesting));
    c.seal_params(master);
    seed("config", "one-slot", c.serialize());
    c.slots.push_back(c.make_slot(master, fuzz::as_bytes("key file bytes"), format::SlotKind::KeyFile, kArgonTesting));
    c.cipher = CipherId::Aes256Gcm;
    c.block_size = 65536;
    c.seal_params(master);
    seed("config", "two-slots-aes", c.serialize());
  }
  // file_header
  {
    format::FileHeader h;
    for (size_t i = 0; i < h.id.size(); ++i) h.id[i] = static_cast<uint8_t>(0xa0 + i);
    seed("file_header", "valid", h.serialize());
    auto b = h.serialize();
    b[0] = 2;
    seed("file_header", "version-2", b);
  }
  // block_decode
  for (bool aes : {false, true}) {
    std::string c = aes ? "aes-" : "xchacha-";
    seed("block_decode", c + "one-byte", content_file(aes, [](ContentFile& f) { f.write(0, fuzz::as_bytes("x")); }));
    seed("block_decode", c + "three-blocks", content_file(aes, [](ContentFile& f) {
           std::vector<uint8_t> d(3 * 4096 + 7, 0x5a);
           f.write(0, d);
         }));
    seed("block_decode", c + "exact-block", content_file(aes, [](ContentFile& f) {
           std::vector<uint8_t> d(4096, 0x11);
           f.write(0, d);
         }));
    seed("block_decode", c + "sparse", content_file(aes, [](ContentFile& f) {
           f.truncate(6 * 4096 + 100);
           std::vector<uint8_t> d(300, 0x77);
           f.write(3 * 4096 + 10, d);
         }));
  }
  // name_decrypt
  seed("name_decrypt", "short", fx.names.encrypt(fx.iv, "report.txt"));
  seed("name_decrypt", "long", fx.names.encrypt(fx.iv, std::string(200, 'n')));
  seed("name_decrypt", "longname", layout::long_name_for(fx.names.encrypt(fx.iv, std::string(200, 'n'))));
  // link_decrypt
  seed("link_decrypt", "short", fx.links.encrypt("../docs/report.txt"));
  seed("link_decrypt", "long", fx.links.encrypt(std::string(3500, 'p')));
  // xattr
  {
    std::string name = *fx.xattrs.encrypt_name("user.comment");
    auto value = fx.xattrs.encrypt_value(name, fuzz::as_bytes("a value"));
    seed("xattr", "valid",
         std::string(1, static_cast<char>(name.size())) + name + std::string(value.begin(), value.end()));
  }
  // base64url
  seed("base64url", "hello", "aGVsbG8");
  seed("base64url", "key", base64url_encode(fuzz::fixed_key(5).span()));
  seed("base64url", "hex", "00ff10ab");
  // fsck_tree
  seed("fsck_tree", "everything",
       std::string(1, '\0') + record(0, 0, "notes.txt", "stray") + record(1, 1, "a.txt", "hello world") +
           record(1, 3, "damaged", std::string(9000, 'd')) + record(1, 0, "raw", "not encrypted") +
           record(2, 1, "link", "target") + record(2, 1, "longlink", std::string(3200, 'l')) +
           record(2, 2, "badlong", "garbage") + record(3, 0, "dir", "inner contents") + record(3, 1, "badiv", "short") +
           record(3, 2, "noiv", "") + record(4, 1, "long", "") + record(4, 0, "badside", "garbage") +
           record(5, 0, "abc", "orphan") + record(5, 8, "x", "y") + record(5, 2, "0123456789abcdef", "tmp") +
           record(6, 3, "comment", "v") + record(6, 0, "foreign", "v") + record(7, 0, "fifo", ""));
  seed("fsck_tree", "repair",
       std::string(1, '\1') + record(5, 9, "orphan", "x") + record(5, 3, "0011223344556677", "t"));
  // sidecar
  seed("sidecar", "raw", std::string(1, '\0') + "not a name");
  seed("sidecar", "valid", std::string(1, '\1') + std::string(200, 's'));
  seed("sidecar", "short-valid", std::string(1, '\1') + "short");
  return 0;
}
