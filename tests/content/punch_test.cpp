// ContentFile::zero_range (fallocate's PUNCH_HOLE and ZERO_RANGE) and ContentFile::extend: the range reads as
// zeros and nothing else changes, whole blocks become holes whose backing space is released (or kept), the last
// block stays a data block flagged final, and every tamper property still holds: a zeroed data block, a zeroed
// claimer or a file cut at a block boundary is still detected.
#include <fcntl.h>
#include <sys/stat.h>

#include "content_test_util.hpp"

namespace veil::testing {
namespace {

using Space = ContentFile::Space;

class ContentPunch : public ::testing::TestWithParam<CipherId> {
 protected:
  void SetUp() override {
    cipher_ = make_cipher(GetParam());
    B = cipher_->layout().block_size();
    slot = cipher_->layout().slot_size();
  }
  std::string path(const std::string& name = "f") const { return dir_.file(name); }
  uint64_t slot_off(uint64_t i) const { return cipher_->layout().slot_offset(i); }

  // A file holding `data`, written through the engine, and its model.
  std::unique_ptr<ContentFile> make(const std::vector<uint8_t>& data, const std::string& name = "f") {
    auto f = open_content(cipher_, path(name));
    f->write(0, data);
    return f;
  }
  static void zero_model(std::vector<uint8_t>& m, uint64_t off, uint64_t len) {
    if (off >= m.size()) return;
    uint64_t end = m.size() - off < len ? m.size() : off + len;
    std::fill(m.begin() + static_cast<std::ptrdiff_t>(off), m.begin() + static_cast<std::ptrdiff_t>(end), 0);
  }
  // Reads through a fresh engine (nothing cached) and checks that fsck's verification agrees.
  void expect_contents(const std::string& p, const std::vector<uint8_t>& want) {
    auto g = open_content(cipher_, p);
    std::vector<uint8_t> got;
    ASSERT_NO_THROW(got = read_all(*g));
    EXPECT_TRUE(got == want) << "contents differ (" << got.size() << " vs " << want.size() << " bytes)";
    EXPECT_EQ(g->first_bad_block(), std::nullopt);
    EXPECT_EQ(file_size(g->fd()), cipher_->layout().backing_size(want.size()));
  }
  static uint64_t allocated_bytes(const std::string& p) {
    UniqueFd fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC));
    EXPECT_EQ(::fdatasync(fd.get()), 0);  // delayed allocation done
    struct stat st {};
    EXPECT_EQ(::fstat(fd.get(), &st), 0);
    return static_cast<uint64_t>(st.st_blocks) * 512;
  }
  bool slot_is_unallocated(const std::string& p, uint64_t i) const {
    UniqueFd fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC));
    off_t d = ::lseek(fd.get(), static_cast<off_t>(slot_off(i)), SEEK_DATA);
    // Whole file-system blocks inside the slot are gone; its first and last few bytes may share a block with
    // the neighbours.
    return d < 0 || static_cast<uint64_t>(d) >= slot_off(i + 1) - 4096;
  }
  void zero_slot(const std::string& p, uint64_t i) {
    auto bytes = file_bytes(p);
    std::fill(bytes.begin() + static_cast<std::ptrdiff_t>(slot_off(i)),
              bytes.begin() + static_cast<std::ptrdiff_t>(std::min<uint64_t>(slot_off(i + 1), bytes.size())), 0);
    put_file_bytes(p, bytes);
  }
  void expect_auth(const std::string& p) {
    EXPECT_EQ(error_kind_of([&] { read_all(*open_content(cipher_, p)); }), ErrorKind::Auth);
    EXPECT_TRUE(open_content(cipher_, p)->first_bad_block().has_value());
  }

  ScratchDir dir_;
  std::shared_ptr<const ContentCipher> cipher_;
  uint64_t B = 0, slot = 0;
};

TEST_P(ContentPunch, PunchingWholeBlocksMakesHolesAndReleasesTheirSpace) {
  auto data = random_bytes(100 * B + 7, 1);
  auto f = make(data);
  const uint64_t before = allocated_bytes(path());
  f->zero_range(10 * B, 80 * B, Space::Release);
  zero_model(data, 10 * B, 80 * B);
  EXPECT_EQ(read_all(*f), data);
  expect_contents(path(), data);
  const uint64_t after = allocated_bytes(path());
  EXPECT_LE(after + 80 * slot - 2 * 4096, before) << "the punched slots still take space";
  for (uint64_t i = 11; i < 89; ++i) EXPECT_TRUE(slot_is_unallocated(path(), i)) << "slot " << i;
  EXPECT_FALSE(slot_is_unallocated(path(), 9));
  EXPECT_FALSE(slot_is_unallocated(path(), 90));
}

TEST_P(ContentPunch, ZeroRangeKeepsTheSpaceAllocated) {
  auto data = random_bytes(100 * B + 7, 2);
  auto f = make(data);
  const uint64_t before = allocated_bytes(path());
  f->zero_range(10 * B + 5, 80 * B, Space::Keep);
  zero_model(data, 10 * B + 5, 80 * B);
  expect_contents(path(), data);
  EXPECT_GE(allocated_bytes(path()) + 2 * 4096, before) << "ZERO_RANGE released space";
}

TEST_P(ContentPunch, EveryKindOfRangeReadsAsZerosAndTheRestIsUntouched) {
  const uint64_t size = 6 * B + 100;
  // (offset, length): inside one block, across one boundary, whole blocks, a hole run joining earlier holes,
  // up to the end, past the end, the whole file, at or past the end (nothing), the last block only, lengths
  // that overflow an offset.
  const std::vector<std::pair<uint64_t, uint64_t>> ranges = {{10, 20},
                                                             {B - 5, 10},
                                                             {B, B},
                                                             {B, 3 * B},
                                                             {B + 1, 3 * B},
                                                             {0, B},
                                                             {2 * B, size},
                                                             {3 * B + 9, 9 * B},
                                                             {0, size},
                                                             {size, 100},
                                                             {size + B, B},
                                                             {6 * B, 100},
                                                             {6 * B + 50, 50},
                                                             {5 * B, B + 100},
                                                             {7, ~uint64_t{0} - 7},
                                                             {B / 2, ~uint64_t{0}},
                                                             {0, 1},
                                                             {size - 1, 1}};
  for (Space space : {Space::Release, Space::Keep}) {
    for (size_t r = 0; r < ranges.size(); ++r) {
      SCOPED_TRACE("range " + std::to_string(r) + (space == Space::Keep ? " keep" : " release"));
      std::string p = path("r" + std::to_string(r) + (space == Space::Keep ? "k" : "r"));
      auto data = random_bytes(size, static_cast<uint32_t>(r + 10));
      auto f = make(data, p.substr(p.rfind('/') + 1));
      f->zero_range(ranges[r].first, ranges[r].second, space);
      zero_model(data, ranges[r].first, ranges[r].second);
      EXPECT_EQ(f->size(), size);
      expect_contents(p, data);
    }
  }
}

TEST_P(ContentPunch, PunchingIntoExistingHolesJoinsTheRuns) {
  // Holes 1..3 (written past them), data 4..5, hole 6, data 7: punching 4..5 makes one run 1..6 claimed by 7.
  std::vector<uint8_t> data(8 * B, 0);
  auto f = open_content(cipher_, path());
  auto a = random_bytes(B, 3), b = random_bytes(2 * B, 4), c = random_bytes(B, 5);
  f->write(0, a);
  f->write(4 * B, b);
  f->write(7 * B, c);
  std::copy(a.begin(), a.end(), data.begin());
  std::copy(b.begin(), b.end(), data.begin() + 4 * B);
  std::copy(c.begin(), c.end(), data.begin() + 7 * B);
  expect_contents(path(), data);
  f->zero_range(4 * B, 2 * B, Space::Release);
  zero_model(data, 4 * B, 2 * B);
  expect_contents(path(), data);
  // Block 0 is data with no claim before it: zeroing it is still detected. So is zeroing the claimer.
  const auto saved = file_bytes(path());
  zero_slot(path(), 0);
  expect_auth(path());
  put_file_bytes(path(), saved);
  zero_slot(path(), 7);
  expect_auth(path());
  put_file_bytes(path(), saved);
  expect_contents(path(), data);
  // Writing into the joined run afterwards still works, and shortens the claim again.
  auto d = random_bytes(100, 6);
  open_content(cipher_, path())->write(2 * B + 10, d);
  std::copy(d.begin(), d.end(), data.begin() + 2 * B + 10);
  expect_contents(path(), data);
}

TEST_P(ContentPunch, TheLastBlockStaysFinalSoACutIsStillDetected) {
  for (uint64_t from : {uint64_t{0}, B, B + 1}) {
    SCOPED_TRACE("punch from " + std::to_string(from));
    std::string name = "cut" + std::to_string(from);
    auto data = random_bytes(3 * B, 7);
    auto f = make(data, name);
    f->zero_range(from, 3 * B, Space::Release);
    zero_model(data, from, 3 * B);
    expect_contents(path(name), data);
    // The last slot is a data slot of zeros, flagged final; dropping it leaves a file ending in a non-final
    // block (or a hole), which fails.
    truncate_file(path(name), slot_off(2));
    expect_auth(path(name));
  }
}

TEST_P(ContentPunch, ZeroingTheDataAroundAPunchedRunIsDetected) {
  auto data = random_bytes(10 * B, 8);
  auto f = make(data);
  f->zero_range(2 * B, 4 * B, Space::Release);  // holes 2..5, claimed by block 6
  zero_model(data, 2 * B, 4 * B);
  expect_contents(path(), data);
  const auto saved = file_bytes(path());
  for (uint64_t i : {uint64_t{1}, uint64_t{6}, uint64_t{7}, uint64_t{9}}) {
    SCOPED_TRACE("zeroed slot " + std::to_string(i));
    zero_slot(path(), i);
    expect_auth(path());
    put_file_bytes(path(), saved);
  }
  expect_contents(path(), data);
}

TEST_P(ContentPunch, APunchAfterAnInterruptedWriteClaimsOnlyTheZeroSlots) {
  // An interrupted write into a hole leaves block 10 claiming ten holes while 3..5 hold data (tolerated,
  // FORMAT.md 6.3). A punch of 7..8 rewrites that claim: it must reach back to 6 only, or block 5 could then be
  // zeroed without anyone noticing.
  auto tail = random_bytes(B, 9);
  auto add = random_bytes(3 * B, 10);
  auto f = open_content(cipher_, path());
  f->write(10 * B, tail);
  f->set_step_hook_for_testing([](std::string_view s) {
    if (s == "new-blocks") throw std::runtime_error("crash");
  });
  EXPECT_THROW(f->write(3 * B, add), std::runtime_error);
  f = open_content(cipher_, path());
  std::vector<uint8_t> data(11 * B, 0);
  std::copy(add.begin(), add.end(), data.begin() + 3 * B);
  std::copy(tail.begin(), tail.end(), data.begin() + 10 * B);
  expect_contents(path(), data);
  f->zero_range(7 * B, 2 * B, Space::Release);
  expect_contents(path(), data);
  zero_slot(path(), 5);
  expect_auth(path());
}

TEST_P(ContentPunch, ADamagedFileIsNotPunchedButReported) {
  auto data = random_bytes(5 * B, 11);
  make(data);
  zero_slot(path(), 3);  // block 3 zeroed: nothing claims it
  auto f = open_content(cipher_, path());
  EXPECT_EQ(error_kind_of([&] { f->zero_range(2 * B, B + 1, Space::Release); }), ErrorKind::Auth);
}

TEST_P(ContentPunch, ExtendOnlyGrows) {
  auto data = random_bytes(B + 10, 12);
  auto f = make(data);
  f->extend(5);
  f->extend(B + 10);
  expect_contents(path(), data);
  f->extend(7 * B + 3);
  data.resize(7 * B + 3, 0);
  expect_contents(path(), data);
  EXPECT_TRUE(slot_is_unallocated(path(), 4)) << "extend writes only the new final block";
  auto g = open_content(cipher_, path("empty"));
  g->extend(10);
  expect_contents(path("empty"), std::vector<uint8_t>(10, 0));
}

INSTANTIATE_TEST_SUITE_P(Ciphers, ContentPunch, ::testing::Values(CipherId::Aes256Gcm, CipherId::XChaCha20Poly1305),
                         [](const auto& info) { return cipher_label(info.param); });

}  // namespace
}  // namespace veil::testing
