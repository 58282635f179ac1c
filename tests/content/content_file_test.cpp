// Round trips of the content engine at every size boundary, with holes, grow and shrink, for both ciphers and
// several block sizes.
#include <sys/resource.h>
#include <sys/stat.h>

#include <csignal>
#include <tuple>

#include "content_test_util.hpp"

namespace veil::testing {
namespace {

struct EngineParam {
  CipherId cipher;
  uint32_t block_size;
};

std::string param_name(const ::testing::TestParamInfo<EngineParam>& info) {
  return cipher_label(info.param.cipher) + "_" + std::to_string(info.param.block_size);
}

class ContentRoundTrip : public ::testing::TestWithParam<EngineParam> {
 protected:
  void SetUp() override { cipher_ = make_cipher(GetParam().cipher, GetParam().block_size); }
  uint64_t B() const { return GetParam().block_size; }
  std::unique_ptr<ContentFile> open(const std::string& name = "f") { return open_content(cipher_, dir_.file(name)); }
  uint64_t backing_size(const std::string& name = "f") const {
    struct stat st {};
    EXPECT_EQ(::stat(dir_.file(name).c_str(), &st), 0);
    return static_cast<uint64_t>(st.st_size);
  }
  uint64_t allocated_bytes(const std::string& name = "f") const {
    struct stat st {};
    EXPECT_EQ(::stat(dir_.file(name).c_str(), &st), 0);
    return static_cast<uint64_t>(st.st_blocks) * 512;
  }

  ScratchDir dir_;
  std::shared_ptr<const ContentCipher> cipher_;
};

TEST_P(ContentRoundTrip, EmptyFileIsAnEmptyBackingFile) {
  auto f = open();
  EXPECT_EQ(f->size(), 0u);
  f->write(0, {});
  EXPECT_EQ(backing_size(), 0u);
  std::vector<uint8_t> buf(10);
  EXPECT_EQ(f->read(0, buf), 0u);
  EXPECT_EQ(f->read(12345, buf), 0u);
}

TEST_P(ContentRoundTrip, WholeFileRoundTripsAtEveryBoundary) {
  const uint64_t b = B();
  for (uint64_t n : {uint64_t{1}, b - 1, b, b + 1, 2 * b - 1, 2 * b, 2 * b + 1, uint64_t{3} * 1024 * 1024 + 17}) {
    SCOPED_TRACE("size " + std::to_string(n));
    auto name = "f" + std::to_string(n);
    auto data = random_bytes(n, static_cast<uint32_t>(n));
    {
      auto f = open(name);
      f->write(0, data);
      EXPECT_EQ(f->size(), n);
      EXPECT_EQ(read_all(*f), data);
    }
    EXPECT_EQ(backing_size(name), cipher_->layout().backing_size(n));
    auto again = open(name);  // a fresh engine: nothing cached
    EXPECT_EQ(again->size(), n);
    EXPECT_EQ(read_all(*again), data);
    // Reads that start and end inside blocks.
    if (n > 3) {
      EXPECT_EQ(read_range(*again, 1, n - 2), std::vector<uint8_t>(data.begin() + 1, data.end() - 1));
    }
  }
}

TEST_P(ContentRoundTrip, ReadPastEndIsShort) {
  auto f = open();
  auto data = random_bytes(B() + 10, 1);
  f->write(0, data);
  std::vector<uint8_t> buf(100);
  EXPECT_EQ(f->read(B(), buf), 10u);
  EXPECT_TRUE(std::equal(buf.begin(), buf.begin() + 10, data.begin() + B()));
  EXPECT_EQ(f->read(B() + 10, buf), 0u);
  EXPECT_EQ(f->read(B() * 100, buf), 0u);
}

TEST_P(ContentRoundTrip, UnalignedWritesSpanningBlocksMergeWithOldContents) {
  auto f = open();
  std::vector<uint8_t> ref = random_bytes(4 * B() + 100, 2);
  f->write(0, ref);
  struct W {
    uint64_t off, len;
  };
  for (W w : {W{B() - 3, 2 * B() + 7}, W{1, 1}, W{B(), 1}, W{3 * B() + 99, 1}, W{2 * B() + 5, B() - 10},
              W{4 * B() + 50, 3 * B()} /* crosses the end */}) {
    auto d = random_bytes(w.len, static_cast<uint32_t>(w.off * 31 + w.len));
    f->write(w.off, d);
    if (ref.size() < w.off + w.len) ref.resize(w.off + w.len);
    std::copy(d.begin(), d.end(), ref.begin() + w.off);
    ASSERT_EQ(f->size(), ref.size());
    ASSERT_EQ(read_all(*f), ref);
  }
  EXPECT_EQ(read_all(*open()), ref);
}

TEST_P(ContentRoundTrip, SmallAppendsBuildTheSameFileAsOneWrite) {
  auto f = open();
  auto data = random_bytes(3 * B() + 333, 3);
  for (size_t off = 0; off < data.size(); off += 97)
    f->write(off, std::span(data).subspan(off, std::min<size_t>(97, data.size() - off)));
  EXPECT_EQ(read_all(*f), data);
  EXPECT_EQ(backing_size(), cipher_->layout().backing_size(data.size()));
}

TEST_P(ContentRoundTrip, WriteFarPastEndLeavesAReadableSparseHole) {
  auto f = open();
  auto head = random_bytes(100, 4), tail = random_bytes(50, 5);
  f->write(0, head);
  const uint64_t off = 200 * B() + 7;
  f->write(off, tail);
  std::vector<uint8_t> ref(off + tail.size(), 0);
  std::copy(head.begin(), head.end(), ref.begin());
  std::copy(tail.begin(), tail.end(), ref.begin() + off);
  EXPECT_EQ(f->size(), ref.size());
  EXPECT_EQ(read_all(*f), ref);
  EXPECT_EQ(read_all(*open()), ref);
  // Only the first and last blocks hold data; the 199 blocks between were never written.
  EXPECT_LT(allocated_bytes(), 40 * B());
}

TEST_P(ContentRoundTrip, WriteIntoTheMiddleOfAHoleKeepsTheRestReadable) {
  auto f = open();
  const uint64_t b = B();
  auto last = random_bytes(10, 6);
  f->write(20 * b, last);  // holes 0..19
  std::vector<uint8_t> ref(20 * b + 10, 0);
  std::copy(last.begin(), last.end(), ref.begin() + 20 * b);
  struct W {
    uint64_t off, len;
  };
  // The middle of the run, the block just before the data block, the first block, a write over hole and data.
  for (W w : {W{7 * b + 5, 10}, W{19 * b + 1, 3}, W{0, 1}, W{12 * b - 1, 2}, W{18 * b, 2 * b + 4}}) {
    auto d = random_bytes(w.len, static_cast<uint32_t>(w.off));
    f->write(w.off, d);
    std::copy(d.begin(), d.end(), ref.begin() + w.off);
    ASSERT_EQ(read_all(*f), ref);
    ASSERT_EQ(read_all(*open()), ref);
  }
}

TEST_P(ContentRoundTrip, TruncateUpTo10GiBWritesAlmostNothingAndReadsZeros) {
  auto f = open();
  auto head = random_bytes(B() + 1, 7);
  f->write(0, head);
  const uint64_t big = uint64_t{10} << 30;
  f->truncate(big);
  EXPECT_EQ(f->size(), big);
  EXPECT_LT(allocated_bytes(), uint64_t{1} << 20) << "growing must leave a sparse backing file";
  EXPECT_EQ(read_range(*f, 0, head.size()), head);
  const std::vector<uint8_t> zeros(3 * B(), 0);
  for (uint64_t off : {head.size(), uint64_t{5} << 30, big - 3 * B() - 1}) {
    SCOPED_TRACE(off);
    EXPECT_EQ(read_range(*f, off, zeros.size()), zeros);
  }
  EXPECT_EQ(read_range(*f, big - 5, 100), std::vector<uint8_t>(5, 0));
  // Data written into the middle of the huge hole reads back, and the zeros around it still do.
  auto mid = random_bytes(B() * 2, 8);
  const uint64_t moff = (uint64_t{7} << 30) + 123;
  f->write(moff, mid);
  EXPECT_EQ(read_range(*f, moff, mid.size()), mid);
  EXPECT_EQ(read_range(*f, moff - B(), B()), std::vector<uint8_t>(B(), 0));
  EXPECT_EQ(read_range(*f, moff + mid.size(), B()), std::vector<uint8_t>(B(), 0));
  EXPECT_EQ(read_range(*open(), big - B(), B()), std::vector<uint8_t>(B(), 0));
  EXPECT_LT(allocated_bytes(), uint64_t{1} << 20);
}

TEST_P(ContentRoundTrip, GrowAndShrinkKeepContentsAndZeroTheGrownPart) {
  auto f = open();
  std::vector<uint8_t> ref = random_bytes(3 * B() + 5, 9);
  f->write(0, ref);
  for (uint64_t n : {2 * B() + 1, 2 * B(), 2 * B() + 100, 5 * B() + 3, B() - 1, uint64_t{1}, 4 * B(), B(), uint64_t{0},
                     2 * B() + 9}) {
    SCOPED_TRACE("truncate to " + std::to_string(n));
    f->truncate(n);
    ref.resize(n, 0);
    ASSERT_EQ(f->size(), n);
    ASSERT_EQ(backing_size(), cipher_->layout().backing_size(n));
    ASSERT_EQ(read_all(*f), ref);
    ASSERT_EQ(read_all(*open()), ref);
  }
}

TEST_P(ContentRoundTrip, ShrinkIntoAHoleThenGrowAgain) {
  auto f = open();
  const uint64_t b = B();
  auto tail = random_bytes(b, 10);
  f->write(10 * b, tail);  // holes 0..9
  std::vector<uint8_t> ref(11 * b, 0);
  std::copy(tail.begin(), tail.end(), ref.begin() + 10 * b);
  for (uint64_t n : {5 * b + 17, 3 * b, 9 * b, 9 * b + 1}) {
    SCOPED_TRACE(n);
    f->truncate(n);
    ref.resize(n, 0);
    ASSERT_EQ(read_all(*f), ref);
    ASSERT_EQ(read_all(*open()), ref);
  }
}

// A truncate to 0 and the next write keep the file ID while the old header may still be on disk (a power cut may
// keep the new blocks over old ones: they must belong to one file, docs/FORMAT.md 6.4); an empty file seen anew
// gets a fresh one.
TEST_P(ContentRoundTrip, TruncateToZeroKeepsTheFileIdOnlyWhileTheOldHeaderMayBeOnDisk) {
  auto header_of = [&] {
    auto b = file_bytes(dir_.file("f"));
    return std::vector<uint8_t>(b.begin(), b.begin() + format::kFileHeaderSize);
  };
  auto f = open();
  auto a = random_bytes(100, 11);
  f->write(0, a);
  const auto header_before = header_of();
  f->truncate(0);
  EXPECT_EQ(backing_size(), 0u);
  f->write(0, a);
  EXPECT_EQ(header_of(), header_before);
  EXPECT_EQ(read_all(*open()), a);
  f->truncate(0);
  f->sync(true);  // the empty file is on disk: nothing of the old one can come back
  f->write(0, a);
  const auto header_new = header_of();
  EXPECT_NE(header_new, header_before);
  EXPECT_EQ(read_all(*open()), a);
  f.reset();
  open()->truncate(0);  // an engine that never saw the header on disk
  auto g = open();
  g->write(0, a);
  EXPECT_NE(header_of(), header_new);
  EXPECT_EQ(read_all(*open()), a);
}

TEST_P(ContentRoundTrip, RewritingTheSameDataUsesFreshNonces) {
  auto f = open();
  auto a = random_bytes(B(), 12);
  f->write(0, a);
  auto first = file_bytes(dir_.file("f"));
  f->write(0, a);
  auto second = file_bytes(dir_.file("f"));
  ASSERT_EQ(first.size(), second.size());
  EXPECT_NE(first, second);
  EXPECT_EQ(read_all(*f), a);
}

// Appends past the end are not preallocated: when one fails part-way (here: a file-size limit makes the pwrite
// short and then fail, as a full disk would), the file must be cut back to exactly what it was.
TEST_P(ContentRoundTrip, AnAppendThatFailsPartWayLeavesTheFileAsItWas) {
  auto f = open();
  auto data = random_bytes(3 * B(), 11);  // block-aligned: the append starts past the old end
  f->write(0, data);
  const uint64_t before = backing_size();
  auto more = random_bytes(1 << 20, 12);
  struct Limit {
    rlimit old{};
    void (*old_handler)(int);
    explicit Limit(rlim_t cur) : old_handler(std::signal(SIGXFSZ, SIG_IGN)) {
      ::getrlimit(RLIMIT_FSIZE, &old);
      rlimit lim = old;
      lim.rlim_cur = cur;
      ::setrlimit(RLIMIT_FSIZE, &lim);
    }
    ~Limit() {
      ::setrlimit(RLIMIT_FSIZE, &old);
      std::signal(SIGXFSZ, old_handler);
    }
  };
  for (uint64_t at : {data.size(), data.size() + 5 * B()}) {  // right after the end, and past a hole
    SCOPED_TRACE("append at " + std::to_string(at));
    {
      Limit lim(before + 300 * 1024);
      EXPECT_THROW(f->write(at, more), Error);
    }
    EXPECT_EQ(backing_size(), before);
    EXPECT_EQ(f->size(), data.size());
    EXPECT_EQ(read_all(*f), data);
  }
  f->write(data.size(), more);  // and with room again, the append works
  data.insert(data.end(), more.begin(), more.end());
  EXPECT_EQ(read_all(*open()), data);
}

INSTANTIATE_TEST_SUITE_P(Ciphers, ContentRoundTrip,
                         ::testing::Values(EngineParam{CipherId::Aes256Gcm, 4096},
                                           EngineParam{CipherId::XChaCha20Poly1305, 4096},
                                           EngineParam{CipherId::Aes256Gcm, 16384},
                                           EngineParam{CipherId::XChaCha20Poly1305, 65536}),
                         param_name);

TEST(BlockLayout, SizesAreConsistentForEveryCipher) {
  for (CipherId id : {CipherId::Aes256Gcm, CipherId::XChaCha20Poly1305}) {
    format::BlockLayout L(id, 4096);
    EXPECT_EQ(L.overhead(), nonce_size(id) + format::kHoleFieldSize + kAeadTagSize);
    EXPECT_EQ(L.backing_size(0), 0u);
    EXPECT_EQ(L.plain_size(0), 0u);
    EXPECT_EQ(L.plain_size(format::kFileHeaderSize), 0u);
    for (uint64_t n : {uint64_t{1}, uint64_t{4095}, uint64_t{4096}, uint64_t{4097}, uint64_t{1} << 33}) {
      EXPECT_EQ(L.plain_size(L.backing_size(n)), n);
      EXPECT_EQ(L.block_count(L.backing_size(n)), (n + 4095) / 4096);
    }
  }
  EXPECT_THROW(format::BlockLayout(CipherId::Aes256Gcm, 1000), Error);
  EXPECT_THROW(format::BlockLayout(CipherId::Aes256Gcm, 3 * 4096), Error);
  EXPECT_THROW(format::BlockLayout(CipherId::Aes256Gcm, 2u << 20), Error);
}

}  // namespace
}  // namespace veil::testing
