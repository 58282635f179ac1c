// ContentFile::verify, the engine's read-only verification entry point (what fsck reports from): each kind of
// damage is found where it is, and nothing else is reported.
#include <sys/stat.h>

#include <fstream>

#include "../common/proc_io.hpp"
#include "content_test_util.hpp"

namespace veil::testing {
namespace {

using Ranges = std::vector<std::pair<uint64_t, uint64_t>>;

class ContentVerify : public ::testing::TestWithParam<CipherId> {
 protected:
  void SetUp() override {
    cipher_ = make_cipher(GetParam());
    const auto& L = cipher_->layout();
    B = L.block_size();
    slot = L.slot_size();
  }
  std::string path() const { return dir_.file("f"); }
  uint64_t slot_off(uint64_t i) const { return cipher_->layout().slot_offset(i); }

  // A fresh file holding `data`, written through the engine.
  void make_file(const std::vector<uint8_t>& data) { open_content(cipher_, path())->write(0, data); }
  // Overwrites backing bytes in place (no O_TRUNC: a sparse file stays sparse).
  void put_at(uint64_t off, const std::vector<uint8_t>& bytes) {
    UniqueFd fd(::open(path().c_str(), O_WRONLY | O_CLOEXEC));
    ASSERT_TRUE(fd);
    pwrite_full(fd.get(), bytes, off);
  }
  void flip_at(uint64_t off) {
    UniqueFd fd(::open(path().c_str(), O_RDWR | O_CLOEXEC));
    ASSERT_TRUE(fd);
    uint8_t b = 0;
    ASSERT_EQ(pread_full(fd.get(), {&b, 1}, off), 1u);
    b ^= 0x20;
    pwrite_full(fd.get(), {&b, 1}, off);
  }
  void zero_slot(uint64_t i) { put_at(slot_off(i), std::vector<uint8_t>(slot, 0)); }

  // Verifies through an engine over a read-only descriptor: verify must need nothing more, and must leave the
  // backing file as it was. Also checks that first_bad_block() agrees with the result.
  VerifyResult verify(VerifyOptions opt = {}) {
    const auto before = file_bytes(path());
    struct stat st_before {};
    EXPECT_EQ(::stat(path().c_str(), &st_before), 0);
    UniqueFd fd(::open(path().c_str(), O_RDONLY | O_CLOEXEC));
    EXPECT_TRUE(fd);
    ContentFile f(cipher_, std::move(fd), "test");
    VerifyResult r = f.verify(opt);
    EXPECT_EQ(f.first_bad_block(), r.first_bad_block());
    EXPECT_EQ(file_bytes(path()), before) << "verify changed the backing file";
    struct stat st_after {};
    EXPECT_EQ(::stat(path().c_str(), &st_after), 0);
    EXPECT_EQ(st_after.st_blocks, st_before.st_blocks) << "verify changed the file's allocation";
    return r;
  }

  ScratchDir dir_;
  std::shared_ptr<const ContentCipher> cipher_;
  uint64_t B = 0, slot = 0;
};

TEST_P(ContentVerify, GoodFileIsClean) {
  make_file(random_bytes(5 * B - 123, 1));  // five blocks, the last one short
  uint64_t progressed = 0;
  VerifyOptions opt;
  opt.chunk_bytes = 2 * B;  // several chunks
  opt.on_progress = [&](uint64_t n) { progressed += n; };
  VerifyResult r = verify(opt);
  EXPECT_TRUE(r.clean());
  EXPECT_EQ(r.header, VerifyResult::Header::Ok);
  EXPECT_EQ(r.blocks, 5u);
  EXPECT_EQ(r.backing_size, cipher_->layout().backing_size(5 * B - 123));
  EXPECT_EQ(r.last_slot_size, slot - 123);
  EXPECT_EQ(r.bad_blocks, 0u);
  EXPECT_EQ(r.bad_ranges, Ranges{});
  EXPECT_FALSE(r.more_ranges);
  EXPECT_FALSE(r.cut_at_block_boundary);
  EXPECT_EQ(r.first_bad_block(), std::nullopt);
  EXPECT_EQ(progressed, 5 * B) << "progress must cover every block once";
}

TEST_P(ContentVerify, SparseFileWithHolesIsCleanAndItsHolesAreNotRead) {
  constexpr uint64_t kSize = 10'000'000'000;
  {
    auto f = open_content(cipher_, path());
    f->truncate(kSize);  // only the final block is written
    f->write(kSize / 2, random_bytes(3 * B, 2));
    f->write(kSize / 4, random_bytes(100, 3));
  }
  const uint64_t nb = cipher_->layout().block_count(file_size(open_rw(path()).get()));
  uint64_t progressed = 0;
  VerifyOptions opt;
  opt.on_progress = [&](uint64_t n) { progressed += n; };
  UniqueFd fd(::open(path().c_str(), O_RDONLY | O_CLOEXEC));
  ContentFile f(cipher_, std::move(fd), "test");
  const uint64_t before = bytes_read_so_far();
  VerifyResult r = f.verify(opt);
  EXPECT_LT(bytes_read_so_far() - before, uint64_t{8} << 20) << "verify read the holes";
  EXPECT_TRUE(r.clean());
  EXPECT_EQ(r.blocks, nb);
  EXPECT_EQ(r.bad_blocks, 0u);
  EXPECT_EQ(progressed, nb * B);
}

TEST_P(ContentVerify, DamageInsideAHoleIsLocatedExactly) {
  // Blocks 0-3 data, 4-9 holes (claimed by block 10), block 10 final.
  {
    auto f = open_content(cipher_, path());
    f->write(0, random_bytes(4 * B, 4));
    f->write(10 * B, random_bytes(50, 5));
  }
  ASSERT_TRUE(verify().clean());
  // A byte in hole block 7: blocks 4-6 lose their claimer (block 7 is no data block), block 7 does not decrypt,
  // blocks 8-9 are still claimed by block 10.
  put_at(slot_off(7) + 10, {1});
  VerifyResult r = verify();
  EXPECT_EQ(r.bad_blocks, 4u);
  EXPECT_EQ(r.bad_ranges, (Ranges{{4, 7}}));
}

TEST_P(ContentVerify, OneFlippedByteInAMiddleBlock) {
  make_file(random_bytes(5 * B, 6));
  flip_at(slot_off(2) + slot / 2);
  for (size_t chunk : {size_t{1} << 20, size_t{B}}) {
    VerifyOptions opt;
    opt.chunk_bytes = chunk;
    VerifyResult r = verify(opt);
    EXPECT_FALSE(r.clean());
    EXPECT_EQ(r.header, VerifyResult::Header::Ok);
    EXPECT_EQ(r.bad_blocks, 1u) << chunk;
    EXPECT_EQ(r.bad_ranges, (Ranges{{2, 2}})) << chunk;
    EXPECT_FALSE(r.cut_at_block_boundary);
    EXPECT_EQ(r.first_bad_block(), std::optional<uint64_t>(2));
  }
}

TEST_P(ContentVerify, ZeroedDataBlocksAreNotHoles) {
  make_file(random_bytes(6 * B - 10, 7));
  zero_slot(1);  // block 2's claim (no holes) does not cover it
  VerifyResult r = verify();
  EXPECT_EQ(r.bad_blocks, 1u);
  EXPECT_EQ(r.bad_ranges, (Ranges{{1, 1}}));
  zero_slot(2);
  zero_slot(3);
  r = verify();
  EXPECT_EQ(r.bad_blocks, 3u);
  EXPECT_EQ(r.bad_ranges, (Ranges{{1, 3}}));
  EXPECT_FALSE(r.cut_at_block_boundary);
}

TEST_P(ContentVerify, ZeroedLastBlockIsBadAndNotACut) {
  make_file(random_bytes(3 * B, 8));  // the last slot is whole
  zero_slot(2);
  VerifyResult r = verify();
  EXPECT_EQ(r.bad_blocks, 1u);
  EXPECT_EQ(r.bad_ranges, (Ranges{{2, 2}}));
  EXPECT_FALSE(r.cut_at_block_boundary);
}

TEST_P(ContentVerify, FileCutAtABlockBoundary) {
  make_file(random_bytes(4 * B + 100, 9));
  truncate_file(path(), slot_off(3));  // blocks 0-2 remain, block 2 is not final
  VerifyResult r = verify();
  EXPECT_TRUE(r.cut_at_block_boundary);
  EXPECT_EQ(r.blocks, 3u);
  EXPECT_EQ(r.last_slot_size, slot);
  EXPECT_EQ(r.bad_blocks, 1u);
  EXPECT_EQ(r.bad_ranges, (Ranges{{2, 2}}));
  EXPECT_EQ(r.first_bad_block(), std::optional<uint64_t>(2));
}

TEST_P(ContentVerify, CutWithOtherDamageIsNotReportedAsACut) {
  make_file(random_bytes(4 * B + 100, 10));
  truncate_file(path(), slot_off(3));
  flip_at(slot_off(0) + slot / 2);
  VerifyResult r = verify();
  EXPECT_FALSE(r.cut_at_block_boundary);
  EXPECT_EQ(r.bad_blocks, 2u);
  EXPECT_EQ(r.bad_ranges, (Ranges{{0, 0}, {2, 2}}));
}

TEST_P(ContentVerify, CutInsideABlockIsBadLastBlock) {
  make_file(random_bytes(4 * B + 100, 11));
  truncate_file(path(), slot_off(2) + slot / 2);
  VerifyResult r = verify();
  EXPECT_FALSE(r.cut_at_block_boundary);
  EXPECT_EQ(r.last_slot_size, slot / 2);
  EXPECT_EQ(r.bad_ranges, (Ranges{{2, 2}}));
}

TEST_P(ContentVerify, LastSlotTooShortToHoldData) {
  make_file(random_bytes(3 * B, 12));
  truncate_file(path(), slot_off(2) + cipher_->layout().overhead());
  VerifyResult r = verify();
  EXPECT_TRUE(r.last_slot_too_short);
  EXPECT_FALSE(r.clean());
  EXPECT_EQ(r.last_slot_size, cipher_->layout().overhead());
  EXPECT_EQ(r.first_bad_block(), std::optional<uint64_t>(2));
}

TEST_P(ContentVerify, TruncatedHeader) {
  make_file(random_bytes(100, 13));
  truncate_file(path(), format::kFileHeaderSize - 3);
  VerifyResult r = verify();
  EXPECT_EQ(r.header, VerifyResult::Header::Short);
  EXPECT_EQ(r.backing_size, format::kFileHeaderSize - 3);
  EXPECT_FALSE(r.clean());
  EXPECT_EQ(r.blocks, 0u);
  EXPECT_EQ(r.first_bad_block(), std::optional<uint64_t>(0));
}

TEST_P(ContentVerify, InvalidHeaderSaysWhy) {
  make_file(random_bytes(100, 14));
  put_at(0, {0x7f});  // version
  VerifyResult r = verify();
  EXPECT_EQ(r.header, VerifyResult::Header::Invalid);
  EXPECT_NE(r.header_error.find("version"), std::string::npos) << r.header_error;
  EXPECT_EQ(r.bad_blocks, 0u) << "no block is checked under a bad header";
  EXPECT_EQ(r.first_bad_block(), std::optional<uint64_t>(0));
}

TEST_P(ContentVerify, HeaderWithoutBlocks) {
  make_file(random_bytes(100, 15));
  truncate_file(path(), format::kFileHeaderSize);
  VerifyResult r = verify();
  EXPECT_EQ(r.header, VerifyResult::Header::Ok);
  EXPECT_TRUE(r.header_only());
  EXPECT_FALSE(r.clean());
  EXPECT_EQ(r.first_bad_block(), std::optional<uint64_t>(0));
}

TEST_P(ContentVerify, ZeroLengthFileIsClean) {
  put_file_bytes(path(), {});
  VerifyResult r = verify();
  EXPECT_TRUE(r.clean());
  EXPECT_EQ(r.header, VerifyResult::Header::Ok);
  EXPECT_FALSE(r.header_only());
  EXPECT_EQ(r.backing_size, 0u);
  EXPECT_EQ(r.blocks, 0u);
  EXPECT_EQ(r.first_bad_block(), std::nullopt);
}

TEST_P(ContentVerify, SeveralBadRangesAndTheCap) {
  make_file(random_bytes(20 * B - 1, 16));
  for (uint64_t i : {1, 3, 4, 7, 10, 11, 12, 15}) flip_at(slot_off(i) + 40);
  VerifyOptions opt;
  opt.chunk_bytes = 2 * B;  // 3-4 and 10-12 each span a chunk boundary: still one range each
  VerifyResult r = verify(opt);
  EXPECT_EQ(r.bad_blocks, 8u);
  EXPECT_EQ(r.bad_ranges, (Ranges{{1, 1}, {3, 4}, {7, 7}, {10, 12}, {15, 15}}));
  EXPECT_FALSE(r.more_ranges);

  opt.max_ranges = 3;
  r = verify(opt);
  EXPECT_EQ(r.bad_blocks, 8u) << "the cap limits the ranges listed, not the count";
  EXPECT_EQ(r.bad_ranges, (Ranges{{1, 1}, {3, 4}, {7, 7}}));
  EXPECT_TRUE(r.more_ranges);

  opt.max_ranges = 5;
  r = verify(opt);
  EXPECT_EQ(r.bad_ranges.size(), 5u);
  EXPECT_FALSE(r.more_ranges) << "exactly at the cap";

  opt.max_ranges = 0;  // at least one range is always kept
  r = verify(opt);
  EXPECT_EQ(r.bad_ranges, (Ranges{{1, 1}}));
  EXPECT_TRUE(r.more_ranges);
  EXPECT_EQ(r.first_bad_block(), std::optional<uint64_t>(1));
}

TEST_P(ContentVerify, ARunThatGrowsWhileCappedStaysOneRange) {
  // The last kept range may still grow: a bad run is one range however it is split into chunks.
  make_file(random_bytes(12 * B, 17));
  for (uint64_t i : {2, 5, 6, 7, 8}) flip_at(slot_off(i) + 40);
  VerifyOptions opt;
  opt.chunk_bytes = 2 * B;
  opt.max_ranges = 2;
  VerifyResult r = verify(opt);
  EXPECT_EQ(r.bad_ranges, (Ranges{{2, 2}, {5, 8}}));
  EXPECT_FALSE(r.more_ranges);
  EXPECT_EQ(r.bad_blocks, 5u);
}

INSTANTIATE_TEST_SUITE_P(Ciphers, ContentVerify, ::testing::Values(CipherId::Aes256Gcm, CipherId::XChaCha20Poly1305),
                         [](const auto& info) { return cipher_label(info.param); });

}  // namespace
}  // namespace veil::testing
