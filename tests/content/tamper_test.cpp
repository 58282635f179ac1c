// Tampering with a backing file must give an authentication error (EIO), never wrong data.
#include "content_test_util.hpp"

namespace veil::testing {
namespace {

class ContentTamper : public ::testing::TestWithParam<CipherId> {
 protected:
  void SetUp() override {
    cipher_ = make_cipher(GetParam());
    const auto& L = cipher_->layout();
    B = L.block_size();
    slot = L.slot_size();
    ns = L.nonce_size();
    data_ = random_bytes(3 * B - 100, 42);  // three blocks, the last one short
    auto f = open_content(cipher_, path());
    f->write(0, data_);
    bytes_ = file_bytes(path());
    ASSERT_EQ(bytes_.size(), L.backing_size(data_.size()));
  }
  std::string path(const std::string& name = "f") const { return dir_.file(name); }
  uint64_t slot_off(uint64_t i) const { return cipher_->layout().slot_offset(i); }

  // The whole read fails with Auth/EIO; a fresh engine is used so nothing is cached.
  void expect_auth_on_full_read(const std::string& name = "f") {
    auto f = open_content(cipher_, path(name));
    try {
      auto got = read_all(*f);
      ADD_FAILURE() << "read succeeded on a tampered file (" << got.size() << " bytes returned)";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Auth) << e.what();
      EXPECT_EQ(e.sys_errno(), EIO);
    }
    auto g = open_content(cipher_, path(name));
    EXPECT_TRUE(g->first_bad_block().has_value());
  }
  // Reading exactly block i fails with Auth.
  void expect_auth_on_block(uint64_t i) {
    auto f = open_content(cipher_, path());
    EXPECT_EQ(error_kind_of([&] { read_range(*f, i * B, B); }), ErrorKind::Auth) << "block " << i;
  }
  void flip(uint64_t pos, uint8_t mask = 0x01) {
    auto b = bytes_;
    ASSERT_LT(pos, b.size());
    b[pos] ^= mask;
    put_file_bytes(path(), b);
  }

  ScratchDir dir_;
  std::shared_ptr<const ContentCipher> cipher_;
  std::vector<uint8_t> data_, bytes_;
  uint64_t B = 0, slot = 0, ns = 0;
};

TEST_P(ContentTamper, UntamperedFileReadsBack) {
  EXPECT_EQ(read_all(*open_content(cipher_, path())), data_);
  EXPECT_EQ(open_content(cipher_, path())->first_bad_block(), std::nullopt);
}

TEST_P(ContentTamper, BitFlipInHeaderFileIdIsDetected) {
  flip(4 + 7, 0x80);
  expect_auth_on_full_read();
  expect_auth_on_block(0);
}

TEST_P(ContentTamper, BitFlipInHeaderVersionOrReservedBytesIsAnAuthError) {
  for (uint64_t pos : {0, 1, 2, 3}) {
    SCOPED_TRACE(pos);
    flip(pos, 0x04);
    expect_auth_on_full_read();
  }
}

TEST_P(ContentTamper, BitFlipInNonceIsDetected) {
  flip(slot_off(1) + 3);
  expect_auth_on_full_read();
  expect_auth_on_block(1);
  // The untouched block still reads.
  EXPECT_EQ(read_range(*open_content(cipher_, path()), 0, B), std::vector<uint8_t>(data_.begin(), data_.begin() + B));
}

TEST_P(ContentTamper, BitFlipInHoleBeforeFieldIsDetected) {
  for (uint64_t i : {0, 1, 2}) {
    SCOPED_TRACE(i);
    flip(slot_off(i) + ns);  // hole_before 0 -> 1: a claim that the block before is a hole
    expect_auth_on_block(i);
    flip(slot_off(i) + ns + 7, 0x80);  // an absurd claim
    expect_auth_on_block(i);
  }
}

TEST_P(ContentTamper, BitFlipInCiphertextIsDetected) {
  for (uint64_t i : {0, 1, 2}) {
    SCOPED_TRACE(i);
    flip(slot_off(i) + ns + 8 + 100, 0x10);
    expect_auth_on_full_read();
    expect_auth_on_block(i);
  }
}

TEST_P(ContentTamper, BitFlipInTagIsDetected) {
  flip(slot_off(1) + slot - 1);
  expect_auth_on_block(1);
  flip(bytes_.size() - 5);  // the short last block's tag
  expect_auth_on_full_read();
  expect_auth_on_block(2);
}

TEST_P(ContentTamper, SwappedBlocksAreDetected) {
  auto b = bytes_;
  std::swap_ranges(b.begin() + slot_off(0), b.begin() + slot_off(1), b.begin() + slot_off(1));
  put_file_bytes(path(), b);
  expect_auth_on_full_read();
  expect_auth_on_block(0);
  expect_auth_on_block(1);
}

TEST_P(ContentTamper, BlockMovedFromAnotherFileIsDetected) {
  auto other = open_content(cipher_, path("g"));  // same volume key, different file ID
  other->write(0, random_bytes(data_.size(), 7));
  auto g = file_bytes(path("g"));
  auto b = bytes_;
  std::copy(g.begin() + slot_off(1), g.begin() + slot_off(2), b.begin() + slot_off(1));
  put_file_bytes(path(), b);
  expect_auth_on_block(1);
  expect_auth_on_full_read();
}

TEST_P(ContentTamper, HeaderCopiedFromAnotherFileIsDetected) {
  auto other = open_content(cipher_, path("g"));
  other->write(0, random_bytes(10, 8));
  auto g = file_bytes(path("g"));
  auto b = bytes_;
  std::copy(g.begin(), g.begin() + format::kFileHeaderSize, b.begin());
  put_file_bytes(path(), b);
  expect_auth_on_full_read();
  expect_auth_on_block(0);
}

TEST_P(ContentTamper, TruncationAtABlockBoundaryIsDetected) {
  for (uint64_t keep : {1, 2}) {
    SCOPED_TRACE(keep);
    put_file_bytes(path(), bytes_);
    truncate_file(path(), slot_off(keep));  // the file now ends with a complete, non-final slot
    auto f = open_content(cipher_, path());
    EXPECT_EQ(f->size(), keep * B);
    expect_auth_on_full_read();
    expect_auth_on_block(keep - 1);
  }
}

TEST_P(ContentTamper, TruncationInTheMiddleOfASlotIsDetected) {
  const uint64_t ovh = cipher_->layout().overhead();
  for (uint64_t cut : {slot_off(1) + 1, slot_off(1) + ovh, slot_off(1) + ovh + 1, slot_off(1) + slot / 2,
                       slot_off(2) - 1, bytes_.size() - 1, slot_off(2) + ovh}) {
    SCOPED_TRACE(cut);
    put_file_bytes(path(), bytes_);
    truncate_file(path(), cut);
    expect_auth_on_full_read();
  }
}

TEST_P(ContentTamper, ZeroedDataBlockDoesNotReadAsZeros) {
  for (uint64_t i : {0, 1}) {
    SCOPED_TRACE(i);
    auto b = bytes_;
    std::fill(b.begin() + slot_off(i), b.begin() + slot_off(i + 1), 0);
    put_file_bytes(path(), b);
    expect_auth_on_block(i);
    expect_auth_on_full_read();
  }
}

TEST_P(ContentTamper, ZeroedFinalSlotIsDetected) {
  auto b = bytes_;
  std::fill(b.begin() + slot_off(2), b.end(), 0);
  put_file_bytes(path(), b);
  expect_auth_on_full_read();
  // Also when the final slot is a full one (the zeros could otherwise pass for a hole).
  auto f = open_content(cipher_, path("full"));
  f->write(0, random_bytes(3 * B, 9));
  auto full = file_bytes(path("full"));
  std::fill(full.begin() + slot_off(2), full.end(), 0);
  put_file_bytes(path("full"), full);
  expect_auth_on_full_read("full");
}

TEST_P(ContentTamper, ZeroedBlockNextToRealHolesIsDetected) {
  // Holes 0..4, data 5..7. Zeroing block 6 makes a run 6 that no data block claims.
  auto f = open_content(cipher_, path("h"));
  f->write(5 * B, random_bytes(3 * B, 10));
  auto h = file_bytes(path("h"));
  auto zero_slot = [&](std::vector<uint8_t> v, uint64_t i) {
    std::fill(v.begin() + slot_off(i), v.begin() + slot_off(i + 1), 0);
    return v;
  };
  put_file_bytes(path("h"), zero_slot(h, 6));
  {
    auto g = open_content(cipher_, path("h"));
    EXPECT_EQ(error_kind_of([&] { read_range(*g, 6 * B, B); }), ErrorKind::Auth);
    EXPECT_EQ(read_range(*g, 0, B), std::vector<uint8_t>(B, 0));  // the genuine holes still read as zeros
  }
  // Zeroing the block that claims the holes makes the holes unreadable too: nothing vouches for them.
  put_file_bytes(path("h"), zero_slot(h, 5));
  {
    auto g = open_content(cipher_, path("h"));
    EXPECT_EQ(error_kind_of([&] { read_range(*g, 5 * B, B); }), ErrorKind::Auth);
    EXPECT_EQ(error_kind_of([&] { read_range(*g, 2 * B, B); }), ErrorKind::Auth);
  }
}

TEST_P(ContentTamper, AppendedGarbageIsDetected) {
  const uint64_t ovh = cipher_->layout().overhead();
  for (uint64_t extra : {uint64_t{1}, ovh, ovh + 1, uint64_t{100}, slot, 2 * slot + 3}) {
    SCOPED_TRACE(extra);
    auto b = bytes_;
    auto garbage = random_bytes(extra, static_cast<uint32_t>(extra));
    b.insert(b.end(), garbage.begin(), garbage.end());
    put_file_bytes(path(), b);
    expect_auth_on_full_read();
  }
  // Also after a file that ends with a full block.
  auto f = open_content(cipher_, path("full"));
  f->write(0, random_bytes(2 * B, 11));
  auto full = file_bytes(path("full"));
  for (uint64_t extra : {uint64_t{1}, ovh, ovh + 1}) {
    auto b = full;
    b.resize(b.size() + extra, 0x5a);
    put_file_bytes(path("full"), b);
    expect_auth_on_full_read("full");
  }
}

TEST_P(ContentTamper, WrongKeyIsAnAuthError) {
  auto other = make_cipher(GetParam());
  auto f = open_content(other, path());
  EXPECT_EQ(error_kind_of([&] { read_all(*f); }), ErrorKind::Auth);
}

INSTANTIATE_TEST_SUITE_P(Ciphers, ContentTamper, ::testing::Values(CipherId::Aes256Gcm, CipherId::XChaCha20Poly1305),
                         [](const auto& info) { return cipher_label(info.param); });

}  // namespace
}  // namespace veil::testing
