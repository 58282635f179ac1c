// Writes the checked-in damaged volumes of tests/fsck/fixtures/<case>/ (cipher/ and expected.txt).
// Usage: veilfs_fsck_fixture_gen <fixtures dir>. Run once; the fixtures are frozen so that a later fsck (and a later
// on-disk format) must keep reporting exactly the same on the same bytes. expected.txt is what fsck reported when
// the fixture was made, reviewed by hand then.
#include <fstream>
#include <iostream>

#include "test_volume.hpp"

using namespace veil;
using namespace veil::fsck;
using testing::pattern;
using testing::read_all;
using testing::TestVolume;
using testing::write_all;
namespace fs = std::filesystem;

namespace {

constexpr uint32_t kB = format::kDefaultBlockSize;

void populate(TestVolume& v) {
  v.mkdir("/docs");
  v.write_file("/docs/report.txt", pattern(3 * kB + 100, 1));
  v.write_file("/docs/" + std::string(200, 'L') + ".txt", pattern(10, 2));
  v.write_file("/hello", pattern(6, 3));
  v.symlink("/link", "docs/report.txt");
}

void make(const fs::path& root, const std::string& name, const std::function<void(TestVolume&)>& damage) {
  fs::path dir = root / name;
  fs::create_directories(dir / "cipher");
  {
    TestVolume v((dir / "cipher").string(), CipherId::XChaCha20Poly1305);
    populate(v);
    damage(v);
    Report r = check_volume(v.dir(), testing::passphrase(), {});
    std::ofstream out(dir / "expected.txt");
    for (const auto& l : r.sorted_lines()) out << l << "\n";
    std::cout << name << ":\n";
    for (const auto& l : r.sorted_lines()) std::cout << "  " << l << "\n";
  }
  // Git keeps no modes but the executable bit; make the tree look as it will after a checkout.
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file() && !e.is_symlink()) fs::permissions(e.path(), fs::perms(0644));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  fs::path root = argv[1];
  make(root, "clean", [](TestVolume&) {});
  make(root, "flipped-bit", [](TestVolume& v) {
    auto p = v.abs(v.cipher_path("/docs/report.txt"));
    auto b = read_all(p);
    b[v.vol().content()->layout().slot_offset(1) + 200] ^= 0x01;
    write_all(p, b);
  });
  make(root, "missing-iv", [](TestVolume& v) { fs::remove(v.abs(v.cipher_path("/docs") + "/veilfs.diriv")); });
  make(root, "orphaned-sidecar",
       [](TestVolume& v) { fs::remove(v.abs(v.cipher_path("/docs/" + std::string(200, 'L') + ".txt"))); });
  make(root, "truncated", [](TestVolume& v) {
    fs::resize_file(v.abs(v.cipher_path("/docs/report.txt")), v.vol().content()->layout().slot_offset(2));
  });
  make(root, "swapped-blocks", [](TestVolume& v) {
    auto p = v.abs(v.cipher_path("/docs/report.txt"));
    auto b = read_all(p);
    const auto& l = v.vol().content()->layout();
    std::swap_ranges(b.begin() + static_cast<long>(l.slot_offset(0)), b.begin() + static_cast<long>(l.slot_offset(1)),
                     b.begin() + static_cast<long>(l.slot_offset(1)));
    write_all(p, b);
  });
  make(root, "foreign-file",
       [](TestVolume& v) { std::ofstream(v.abs(v.cipher_path("/docs") + "/Thumbs.db")) << "not ours"; });
  make(root, "corrupt-config", [](TestVolume& v) {
    auto b = read_all(v.abs("veilfs.conf"));
    std::string text(b.begin(), b.end());
    size_t at = text.find("\"volume_id\": \"") + 14;  // one character of a base64 field: valid JSON, bad checksum
    b[at] = b[at] == 'A' ? 'B' : 'A';
    fs::permissions(v.abs("veilfs.conf"), fs::perms(0600));
    write_all(v.abs("veilfs.conf"), b);
  });
  return 0;
}
