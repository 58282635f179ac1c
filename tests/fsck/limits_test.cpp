// Hostile input: each case gets a clear report (or error) within bounded memory, reads and time.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <malloc.h>
#include <sys/stat.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <new>
#include <nlohmann/json.hpp>

#include "../common/proc_io.hpp"
#include "fsck/checker.hpp"
#include "test_volume.hpp"
#include "veilfs/crypto/encoding.hpp"
#include "veilfs/crypto/kdf.hpp"
#include "veilfs/layout/cipher_dir.hpp"

// Heap accounting for this test binary only: live bytes and their peak, so that "bounded memory" is measured,
// not assumed. malloc_usable_size works with glibc's allocator and with ASan's.
namespace {
std::atomic<int64_t> g_live{0}, g_peak{0};
void account(int64_t d) {
  int64_t now = g_live.fetch_add(d, std::memory_order_relaxed) + d;
  int64_t peak = g_peak.load(std::memory_order_relaxed);
  while (now > peak && !g_peak.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
}
void* counted_alloc(size_t n) {
  void* p = std::malloc(n ? n : 1);
  if (!p) throw std::bad_alloc();
  account(static_cast<int64_t>(malloc_usable_size(p)));
  return p;
}
void counted_free(void* p) noexcept {
  if (!p) return;
  account(-static_cast<int64_t>(malloc_usable_size(p)));
  std::free(p);
}
}  // namespace

void* operator new(size_t n) { return counted_alloc(n); }
void* operator new[](size_t n) { return counted_alloc(n); }
void operator delete(void* p) noexcept { counted_free(p); }
void operator delete[](void* p) noexcept { counted_free(p); }
void operator delete(void* p, size_t) noexcept { counted_free(p); }
void operator delete[](void* p, size_t) noexcept { counted_free(p); }

namespace veil::fsck {
namespace {

using testing::pattern;
using testing::read_all;
using testing::TestVolume;
using testing::write_all;
using veil::testing::bytes_read_so_far;
using Lines = std::vector<std::string>;

std::string base(const std::string& p) { return std::filesystem::path(p).filename().string(); }

TEST(FsckLimits, AbsurdKdfParametersAreRefusedWithAClearMessage) {
  TestVolume v;
  const std::string conf = v.abs("veilfs.conf");
  ::chmod(conf.c_str(), 0600);
  auto bytes = read_all(conf);
  auto j = nlohmann::json::parse(bytes.begin(), bytes.end());
  j["key_slots"][0]["kdf"]["memlimit"] = uint64_t{1} << 50;  // a petabyte of Argon2 memory
  j["key_slots"][0]["kdf"]["opslimit"] = uint64_t{1} << 40;
  j.erase("checksum");
  std::string body = j.dump();
  std::array<uint8_t, 32> sum{};
  blake2b(sum, {std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(body.data()), body.size())});
  j["checksum"] = hex_encode(sum);  // a consistent checksum: only the bounds can stop it
  std::string text = j.dump(2);
  write_all(conf, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
  Report r = check_volume(v.dir(), testing::passphrase(), {});
  EXPECT_FALSE(r.config_ok);
  EXPECT_EQ(r.sorted_lines(), Lines{"config-corrupt /: config key slot KDF parameters are out of bounds (opslimit "
                                    "1..64, memlimit 8 KiB..4 GiB)"});
}

TEST(FsckLimits, TenGigabyteSparseSidecarsAreJudgedBySizeNotRead) {
  TestVolume v;
  v.mkdir("/d");
  const std::string file = v.write_file("/d/" + std::string(220, 'n'), pattern(10, 1));
  const std::string link = v.symlink("/d/link", std::string(4000, 't'));
  const std::string link_side = v.cipher_path("/d") + "/veilfs.link." + base(link);
  constexpr off_t kTenGb = 10'000'000'000;
  ::chmod(v.abs(file + ".name").c_str(), 0600);
  ASSERT_EQ(::truncate(v.abs(file + ".name").c_str(), kTenGb), 0);
  ::chmod(v.abs(link_side).c_str(), 0600);
  ASSERT_EQ(::truncate(v.abs(link_side).c_str(), kTenGb), 0);
  const uint64_t before = bytes_read_so_far();
  Report r = v.check();
  EXPECT_LT(bytes_read_so_far() - before, uint64_t{1} << 20) << "fsck read a 10 GB sidecar";
  EXPECT_EQ(r.sorted_lines(),
            (Lines{"link-target-bad /d/link: long target sidecar is larger than 8192 bytes or not a regular file",
                   "sidecar-bad /d/" + base(file) +
                       ": sidecar is 10000000000 bytes, more than 1024 (not read); the name "
                       "is lost, not the contents: --repair names it /d/veilfs-lost-name-" +
                       base(file).substr(base(file).size() - 12)}));
}

TEST(FsckLimits, TenGigabyteSparseFileIsVerifiedWithoutReadingItsHoles) {
  TestVolume v;
  v.write_sparse("/huge", 10'000'000'000, 5'000'000'000, pattern(5000, 2));
  const uint64_t before = bytes_read_so_far();
  Report r = v.check();
  EXPECT_LT(bytes_read_so_far() - before, uint64_t{8} << 20) << "fsck read the holes of a sparse file";
  EXPECT_EQ(r.sorted_lines(), Lines{});
  EXPECT_EQ(r.stats.files, 1u);
}

// A byte written into a 10 GB file's hole: every hole block before it loses its claimer, the blocks after it
// keep theirs. Found exactly, still without reading the holes.
TEST(FsckLimits, DamageInsideAHugeHoleIsLocatedExactlyWithoutReadingIt) {
  TestVolume v;
  const std::string file = v.write_sparse("/huge", 10'000'000'000, 5'000'000'000, pattern(5000, 4));
  const auto& layout = v.vol().content()->layout();
  {
    UniqueFd fd(::open(v.abs(file).c_str(), O_WRONLY | O_CLOEXEC));
    const uint8_t one = 1;
    pwrite_full(fd.get(), {&one, 1}, layout.slot_offset(1000) + 100);
  }
  const uint64_t nb = layout.block_count(std::filesystem::file_size(v.abs(file)));
  const uint64_t before = bytes_read_so_far();
  Report r = v.check();
  EXPECT_LT(bytes_read_so_far() - before, uint64_t{32} << 20) << "fsck read the holes of a sparse file";
  EXPECT_EQ(r.sorted_lines(),
            Lines{"blocks-bad /huge: 1001 of " + std::to_string(nb) + " blocks fail authentication (blocks 0-1000)"});
}

TEST(FsckLimits, HundredKilobyteNamesAreRefusedEverywhere) {
  TestVolume v;
  const std::string file = v.write_file("/" + std::string(230, 'h'), pattern(10, 3));
  std::string huge(100 * 1024, 'A');
  write_all(v.abs(file + ".name"),
            std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(huge.data()), huge.size()));
  EXPECT_EQ(v.check().sorted_lines(), Lines{"sidecar-bad /" + base(file) +
                                            ": sidecar is 102400 bytes, more than 1024 (not read); the name is "
                                            "lost, not the contents: --repair names it /veilfs-lost-name-" +
                                            base(file).substr(base(file).size() - 12)});
  // The engines bound such input too, whichever way it arrives.
  EXPECT_FALSE(v.vol().names().decrypt(v.vol().root_iv(), huge));
  EXPECT_FALSE(v.vol().links().decrypt(huge));
  EXPECT_FALSE(v.vol().xattrs().decrypt_name("user.veilfs." + huge));
  try {
    (void)v.vol().names().encrypt(v.vol().root_iv(), std::string(100 * 1024, 'p'));
    FAIL() << "a 100 KB name was encrypted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::NameTooLong);
  }
}

TEST(FsckLimits, DirectoryWithManyEntriesIsCheckedInBoundedMemory) {
  TestVolume v;
  const std::string big = v.mkdir("/big");
  UniqueFd dfd(::open(v.abs(big).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(dfd);
  const DirIv iv = *layout::read_dir_iv(dfd.get());
  // 40,000 names of 150 bytes: 235 encoded characters each, 9.4 MB of names if anything held the listing.
  constexpr int kEntries = 40000;
  for (int i = 0; i < kEntries; ++i) {
    std::string plain = std::to_string(i) + std::string(150 - std::to_string(i).size(), 'e');
    std::string enc = v.vol().names().encrypt(iv, plain);
    ASSERT_LE(enc.size(), format::kMaxBackingNameSize);
    UniqueFd f(::openat(dfd.get(), enc.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    ASSERT_TRUE(f) << i;
  }
  const int64_t baseline = g_live.load();
  g_peak.store(baseline);
  Report r = v.check();
  const int64_t growth = g_peak.load() - baseline;
  EXPECT_EQ(r.sorted_lines(), Lines{});
  EXPECT_EQ(r.stats.files, static_cast<uint64_t>(kEntries));
  EXPECT_LT(growth, int64_t{2} << 20) << "fsck's heap grew by " << growth << " bytes for one large directory";
}

TEST(FsckLimits, SymlinkLoopsInTheCipherDirAreNeverFollowed) {
  TestVolume v;
  v.mkdir("/d");
  const std::string d = v.cipher_path("/d");
  const std::string a = v.cipher_path("/d/a"), b = v.cipher_path("/d/b"), self = v.cipher_path("/d/self");
  ASSERT_EQ(::symlink(base(b).c_str(), v.abs(a).c_str()), 0);  // a -> b -> a
  ASSERT_EQ(::symlink(base(a).c_str(), v.abs(b).c_str()), 0);
  ASSERT_EQ(::symlink(".", v.abs(self).c_str()), 0);  // a directory loop, if anything followed it
  // The IV file itself replaced by a symlink to itself.
  const std::string iv = v.abs(d + "/veilfs.diriv");
  ASSERT_EQ(::unlink(iv.c_str()), 0);
  ASSERT_EQ(::symlink("veilfs.diriv", iv.c_str()), 0);
  EXPECT_EQ(v.check().sorted_lines(),
            (Lines{"dir-iv-bad /d: directory IV file veilfs.diriv cannot be read: Too many levels of symbolic links",
                   "link-target-bad /d/a: symlink target does not decrypt (tampered or foreign)",
                   "link-target-bad /d/b: symlink target does not decrypt (tampered or foreign)",
                   "link-target-bad /d/self: symlink target does not decrypt (tampered or foreign)"}));
}

}  // namespace
}  // namespace veil::fsck
