// The reverse view without a mount: what it shows, copied into a directory, is a cipher dir that forward mode
// reads back as the plain tree (names, long names, contents of every size, symlinks with long targets, hard
// links); the bytes are the same for the same tree across views; a change to one block changes that block's
// slot only; a file that changes while it is read fails the read.
#include "veilfs/reverse/reverse_view.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>

#include "../content/content_test_util.hpp"
#include "veilfs/layout/cipher_dir.hpp"

namespace veil::testing {
namespace {

namespace fs = std::filesystem;
using reverse::Kind;
using reverse::ReverseView;

std::span<const uint8_t> bytes_of(std::string_view s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }

std::string slurp(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
void spit(const std::string& p, const std::string& data) { std::ofstream(p, std::ios::binary) << data; }

std::string pattern(size_t n, uint32_t seed) {
  std::string s(n, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (auto& c : s) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    c = static_cast<char>(x);
  }
  return s;
}

// Reads everything the view shows into `to`, as a backup tool copying it would.
void materialize(const ReverseView& v, const reverse::Node& dir, const std::string& to) {
  fs::create_directories(to);
  for (const auto& e : v.list(dir)) {
    const std::string path = to + "/" + e.name;
    switch (e.node.kind) {
      case Kind::Dir:
        materialize(v, e.node, path);
        break;
      case Kind::Symlink:
        ASSERT_EQ(::symlink(v.readlink(e.node).c_str(), path.c_str()), 0) << path;
        break;
      case Kind::Special:
        break;
      default: {
        auto r = v.open(e.node);
        const auto size = static_cast<size_t>(v.attributes(e.node).st_size);
        std::string data(size + 100, '\0');
        size_t got = 0;
        // Odd-sized reads at odd offsets, as the kernel never sends but a correct reader must survive.
        while (got < data.size()) {
          const size_t n = r->read(
              got, std::span(reinterpret_cast<uint8_t*>(data.data()) + got, std::min<size_t>(7919, data.size() - got)));
          if (n == 0) break;
          got += n;
        }
        ASSERT_EQ(got, size) << path << ": the size the view reports is the size it reads";
        data.resize(got);
        spit(path, data);
      }
    }
  }
}

// Forward mode's reading of a cipher dir, as the mount does it: the plain tree it stands for, as
// "path" -> "F:contents" / "L:target" / "D".
void read_forward(const Volume& vol, int dirfd, const DirIv& iv, const std::string& prefix,
                  std::map<std::string, std::string>& out) {
  std::vector<std::string> names;
  for_each_dir_entry(dirfd, [&](std::string_view n) {
    names.emplace_back(n);
    return true;
  });
  for (const auto& backing : names) {
    if (layout::is_reserved(backing) && !layout::is_long_name(backing)) continue;
    const std::string encoded = layout::encoded_name_of(dirfd, backing);
    auto plain = vol.names().decrypt(iv, encoded);
    ASSERT_TRUE(plain) << backing;
    const std::string path = prefix + "/" + *plain;
    struct stat st;
    ASSERT_EQ(::fstatat(dirfd, backing.c_str(), &st, AT_SYMLINK_NOFOLLOW), 0);
    if (S_ISDIR(st.st_mode)) {
      UniqueFd sub(::openat(dirfd, backing.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      const DirIv sub_iv = vol.dir_iv(sub.get(), &iv, encoded);
      EXPECT_EQ(layout::read_dir_iv(sub.get()), sub_iv) << path << ": the IV file holds the derived IV";
      out[path] = "D";
      read_forward(vol, sub.get(), sub_iv, path, out);
    } else if (S_ISLNK(st.st_mode)) {
      auto target = vol.links().decrypt(layout::read_link_target(dirfd, backing));
      ASSERT_TRUE(target) << path;
      out[path] = "L:" + *target;
    } else {
      ContentFile f(vol.content(), UniqueFd(::openat(dirfd, backing.c_str(), O_RDONLY | O_CLOEXEC)));
      std::string data(static_cast<size_t>(st.st_size), '\0');
      const size_t n = f.read(0, std::span(reinterpret_cast<uint8_t*>(data.data()), data.size()));
      data.resize(n);
      out[path] = "F:" + data;
    }
  }
}

void read_plain(const std::string& dir, const std::string& prefix, std::map<std::string, std::string>& out) {
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (prefix.empty() && name == reverse::kReverseConfigName) continue;
    const std::string path = prefix + "/" + name;
    if (e.is_symlink())
      out[path] = "L:" + fs::read_symlink(e.path()).string();
    else if (e.is_directory()) {
      out[path] = "D";
      read_plain(e.path().string(), path, out);
    } else {
      out[path] = "F:" + slurp(e.path().string());
    }
  }
}

std::map<std::string, std::string> tree_bytes(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    const std::string rel = e.path().string().substr(dir.size());
    if (e.is_symlink())
      out[rel] = "L:" + fs::read_symlink(e.path()).string();
    else if (e.is_directory())
      out[rel] = "D";
    else
      out[rel] = slurp(e.path().string());
  }
  return out;
}

class ReverseViewTest : public ::testing::Test {
 protected:
  void SetUp() override {
    plain_ = dir_.file("plain");
    fs::create_directories(plain_ + "/sub/deeper");
    spit(plain_ + "/empty", "");
    spit(plain_ + "/one", "x");
    spit(plain_ + "/block", pattern(4096, 1));
    spit(plain_ + "/block-and-one", pattern(4097, 2));
    spit(plain_ + "/big", pattern(10 * 4096 + 123, 3));
    spit(plain_ + "/sub/deeper/note.txt", "deep\n");
    spit(plain_ + "/sub/" + std::string(200, 'L'), "a long name\n");
    fs::create_symlink("one", plain_ + "/link");
    fs::create_symlink(std::string(3000, 't') + "/x", plain_ + "/sub/long-target");
    ASSERT_EQ(::link((plain_ + "/one").c_str(), (plain_ + "/sub/hard").c_str()), 0);
    {
      // Sparse: data in block 7 and at the very end (block 20) only.
      UniqueFd f(::open((plain_ + "/sparse").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
      ASSERT_EQ(::pwrite(f.get(), "seven", 5, 7 * 4096 + 100), 5);
      ASSERT_EQ(::pwrite(f.get(), "end", 3, 20 * 4096 + 10), 3);
    }
    CreateOptions o;
    o.kdf = kArgonTesting;
    o.reverse = true;
    o.config_file = plain_ + "/" + std::string(reverse::kReverseConfigName);
    Volume::create(plain_, bytes_of("pw"), o);
  }
  std::string conf() const { return plain_ + "/" + std::string(reverse::kReverseConfigName); }
  std::unique_ptr<Volume> open() const {
    return Volume::open(plain_, bytes_of("pw"), plain_ + "/" + std::string(reverse::kReverseConfigName));
  }
  std::string copy(const std::string& name) const {
    auto vol = open();
    ReverseView v(*vol, conf());
    const std::string to = dir_.file(name);
    materialize(v, v.root(), to);
    return to;
  }

  ScratchDir dir_;
  std::string plain_;
};

TEST_F(ReverseViewTest, ACopyOfTheViewIsACipherDirThatForwardModeReadsAsThePlainTree) {
  const std::string c = copy("copy");
  EXPECT_TRUE(fs::exists(c + "/veilfs.conf"));
  EXPECT_TRUE(fs::exists(c + "/veilfs.params"));
  EXPECT_TRUE(fs::exists(c + "/veilfs.diriv"));
  EXPECT_EQ(slurp(c + "/veilfs.conf"), slurp(plain_ + "/" + std::string(reverse::kReverseConfigName)));
  auto vol = Volume::open(c, bytes_of("pw"));  // forward mode, the same passphrase, no --config
  std::map<std::string, std::string> got, want;
  UniqueFd root(::open(c.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  read_forward(*vol, root.get(), vol->dir_iv(root.get(), nullptr, ""), "", got);
  read_plain(plain_, "", want);
  EXPECT_EQ(got.size(), want.size());
  for (const auto& [path, what] : want) {
    ASSERT_TRUE(got.count(path)) << path << " is missing from the copy";
    EXPECT_EQ(got[path], what) << path;
  }
  // Nothing plain reached the copy.
  for (const auto& [rel, bytes] : tree_bytes(c)) {
    EXPECT_EQ(rel.find("note"), std::string::npos) << rel;
    EXPECT_EQ(bytes.find("deep\n"), std::string::npos) << rel;
    EXPECT_EQ(bytes.find("a long name"), std::string::npos) << rel;
  }
}

TEST_F(ReverseViewTest, TheSameTreeGivesTheSameBytesAcrossViewsAndAChangedBlockChangesOnlyItsSlot) {
  const auto first = tree_bytes(copy("a"));
  const auto second = tree_bytes(copy("b"));
  EXPECT_EQ(first, second) << "two views of one tree (a volume opened twice) must be byte-identical";

  // One block of "big" changes in place (same size): only its slot differs.
  {
    std::fstream f(plain_ + "/big", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(3 * 4096 + 10);
    f.put('!');
  }
  const auto third = tree_bytes(copy("c"));
  std::vector<std::string> changed;
  for (const auto& [rel, bytes] : first)
    if (third.at(rel) != bytes) changed.push_back(rel);
  ASSERT_EQ(changed.size(), 1u) << "only the file that changed changes";
  const std::string& before = first.at(changed[0]);
  const std::string& after = third.at(changed[0]);
  ASSERT_EQ(before.size(), after.size());
  auto vol = open();
  const auto& layout = vol->content()->layout();
  std::vector<uint64_t> slots;
  for (size_t i = 0; i < before.size(); ++i)
    if (before[i] != after[i]) {
      const uint64_t slot =
          i < format::kFileHeaderSize ? UINT64_MAX : (i - format::kFileHeaderSize) / layout.slot_size();
      if (slots.empty() || slots.back() != slot) slots.push_back(slot);
    }
  EXPECT_EQ(slots, (std::vector<uint64_t>{3})) << "the header and every other slot stay the same";
}

TEST_F(ReverseViewTest, HolesOfAPlainFileStayHolesInTheView) {
  auto vol = open();
  ReverseView v(*vol, conf());
  std::optional<reverse::Node> node;
  for (const auto& e : v.list(v.root()))
    if (e.node.plain == "sparse") node = e.node;
  ASSERT_TRUE(node);
  const auto& layout = vol->content()->layout();
  std::vector<uint8_t> all(static_cast<size_t>(v.attributes(*node).st_size));
  ASSERT_EQ(v.open(*node)->read(0, all), all.size());
  ASSERT_EQ(layout.block_count(all.size()), 21u);
  for (uint64_t i = 0; i < 21; ++i) {
    const auto* slot = all.data() + layout.slot_offset(i);
    const size_t len = i == 20 ? all.size() - layout.slot_offset(i) : layout.slot_size();
    const bool zero = std::all_of(slot, slot + len, [](uint8_t b) { return b == 0; });
    EXPECT_EQ(zero, i != 7 && i != 20) << "slot " << i;
  }
  // Block 7 claims the 7 holes before it, block 20 the 12 after block 7 (the round-trip test reads them back).
  auto hole_before = [&](uint64_t i) {
    uint64_t v = 0;
    for (int k = 0; k < 8; ++k) v |= uint64_t{all[layout.slot_offset(i) + layout.nonce_size() + k]} << (8 * k);
    return v;
  };
  EXPECT_EQ(hole_before(7), 7u);
  EXPECT_EQ(hole_before(20), 12u);
}

TEST_F(ReverseViewTest, LongNamesAreFoundAgainAfterTheDirectoryChanges) {
  auto vol = open();
  ReverseView v(*vol, conf());
  auto sub = v.lookup(v.root(), [&] {
    for (const auto& e : v.list(v.root()))
      if (e.node.plain == "sub") return e.name;
    return std::string();
  }());
  ASSERT_TRUE(sub);
  auto long_entry = [&](const std::string& plain) {
    for (const auto& e : v.list(*sub))
      if (e.node.plain == plain && e.node.kind == Kind::File) return e.name;
    return std::string();
  };
  const std::string before = long_entry("sub/" + std::string(200, 'L'));
  ASSERT_EQ(before.rfind("veilfs.longname.", 0), 0u) << before;
  ASSERT_TRUE(v.lookup(*sub, before));
  ASSERT_TRUE(v.lookup(*sub, before + ".name")) << "its sidecar";
  fs::rename(plain_ + "/sub/" + std::string(200, 'L'), plain_ + "/sub/" + std::string(201, 'M'));
  EXPECT_FALSE(v.lookup(*sub, before)) << "a listing kept from before the rename must not answer";
  const std::string after = long_entry("sub/" + std::string(201, 'M'));
  ASSERT_FALSE(after.empty());
  auto n = v.lookup(*sub, after);
  ASSERT_TRUE(n);
  EXPECT_EQ(n->plain, "sub/" + std::string(201, 'M'));
}

TEST_F(ReverseViewTest, HardLinksShareAFileIdAndANewFileGetsAnother) {
  auto vol = open();
  ReverseView v(*vol, conf());
  struct stat a, b, c;
  ASSERT_EQ(::stat((plain_ + "/one").c_str(), &a), 0);
  ASSERT_EQ(::stat((plain_ + "/sub/hard").c_str(), &b), 0);
  ASSERT_EQ(::stat((plain_ + "/block").c_str(), &c), 0);
  EXPECT_EQ(v.file_id(a, 1), v.file_id(b, 1));
  EXPECT_NE(v.file_id(a, 1), v.file_id(c, 1));
  EXPECT_NE(v.file_id(a, 1), v.file_id(a, 2)) << "an inode number reused by a newer file";
}

TEST_F(ReverseViewTest, AFileThatChangesWhileReadFailsTheReadInsteadOfMixingVersions) {
  auto vol = open();
  ReverseView v(*vol, conf());
  auto node = v.lookup(v.root(), [&] {
    for (const auto& e : v.list(v.root()))
      if (e.node.plain == "big") return e.name;
    return std::string();
  }());
  ASSERT_TRUE(node);
  auto r = v.open(*node);
  std::vector<uint8_t> buf(8192);
  ASSERT_EQ(r->read(0, buf), buf.size());
  spit(plain_ + "/big", pattern(5000, 9));  // rewritten: another size, another mtime
  try {
    r->read(8192, buf);
    FAIL() << "a read after the change must fail";
  } catch (const Error& e) {
    EXPECT_EQ(e.sys_errno(), ESTALE);
  }
  // A fresh open reads the new version whole.
  auto again = v.open(*node);
  std::vector<uint8_t> all(static_cast<size_t>(v.attributes(*node).st_size));
  EXPECT_EQ(again->read(0, all), all.size());
}

TEST_F(ReverseViewTest, NamesThatAreNotEncryptionsAndTheReverseConfigAreNotInTheView) {
  auto vol = open();
  ReverseView v(*vol, conf());
  EXPECT_FALSE(v.lookup(v.root(), "notanencryptedname"));
  EXPECT_FALSE(v.lookup(v.root(), std::string(reverse::kReverseConfigName)));
  EXPECT_FALSE(v.lookup(v.root(), "veilfs.conf.tmp.0123456789abcdef"));
  for (const auto& e : v.list(v.root())) EXPECT_NE(e.node.plain, std::string(reverse::kReverseConfigName));
  // Every name the listing gives is found by lookup, as the same node.
  for (const auto& e : v.list(v.root())) {
    auto n = v.lookup(v.root(), e.name);
    ASSERT_TRUE(n) << e.name;
    EXPECT_EQ(n->kind, e.node.kind) << e.name;
    EXPECT_EQ(n->plain, e.node.plain) << e.name;
  }
}

}  // namespace
}  // namespace veil::testing
