// Crash states: a write or truncate stopped after each of its on-disk steps (the engine's test hook throws there,
// leaving the backing file exactly as a crash would) must leave a file that reads back without an error, holding
// either the old contents (possibly zero-extended) or the new ones.
#include "content_test_util.hpp"

namespace veil::testing {
namespace {

struct Crash {
  std::string step;
};

class ContentCrashStates : public ::testing::TestWithParam<CipherId> {
 protected:
  void SetUp() override {
    cipher_ = make_cipher(GetParam());
    B = cipher_->layout().block_size();
  }

  // Builds the file with `setup`, runs `op` with a crash injected after `step`, and returns the backing path.
  // Fails the test if the step was never reached (so each expected step really is exercised).
  std::string crash_after(const std::string& step, const std::function<void(ContentFile&)>& setup,
                          const std::function<void(ContentFile&)>& op) {
    std::string p = dir_.file("f-" + step + "-" + std::to_string(counter_++));
    auto f = open_content(cipher_, p);
    setup(*f);
    f->set_step_hook_for_testing([&](std::string_view s) {
      if (s == step) throw Crash{step};
    });
    bool crashed = false;
    try {
      op(*f);
    } catch (const Crash&) {
      crashed = true;
    }
    EXPECT_TRUE(crashed) << "step '" << step << "' was not reached";
    return p;
  }

  // The file after the crash, read by a fresh engine (as after a restart): must succeed.
  std::vector<uint8_t> read_after_crash(const std::string& p) {
    auto f = open_content(cipher_, p);
    std::vector<uint8_t> got;
    EXPECT_NO_THROW(got = read_all(*f));
    EXPECT_EQ(f->first_bad_block(), std::nullopt);
    return got;
  }

  // After recovery, the file keeps working: redo the operation and check the final contents.
  void redo_and_check(const std::string& p, const std::function<void(ContentFile&)>& op,
                      const std::vector<uint8_t>& expect) {
    auto f = open_content(cipher_, p);
    op(*f);
    EXPECT_EQ(read_all(*f), expect);
    EXPECT_EQ(read_all(*open_content(cipher_, p)), expect);
  }

  // `op`, then an fdatasync: the blocks it left loose are tightened (the step "tighten").
  static std::function<void(ContentFile&)> then_sync(std::function<void(ContentFile&)> op) {
    return [op = std::move(op)](ContentFile& f) {
      op(f);
      f.sync(true);
    };
  }

  static std::vector<uint8_t> zero_extended(std::vector<uint8_t> v, size_t n) {
    v.resize(n, 0);
    return v;
  }

  ScratchDir dir_;
  std::shared_ptr<const ContentCipher> cipher_;
  uint64_t B = 0;
  int counter_ = 0;
};

TEST_P(ContentCrashStates, InterruptedAppendPastAShortFinalBlockStaysReadable) {
  const auto old = random_bytes(B + B / 2, 1);
  const auto add = random_bytes(B + 10, 2);
  const uint64_t off = 5 * B + 10;  // leaves holes 2..4
  auto setup = [&](ContentFile& f) { f.write(0, old); };
  auto op = [&](ContentFile& f) { f.write(off, add); };
  auto expect = zero_extended(old, off + add.size());
  std::copy(add.begin(), add.end(), expect.begin() + off);

  // Step 1 grew the old final block to a full one: old contents, zero-extended to the block's end.
  EXPECT_EQ(read_after_crash(crash_after("pad-old-final", setup, op)), zero_extended(old, 2 * B));
  // It is on disk before the new blocks are written (they leave holes between, which no pwrite can span).
  EXPECT_EQ(read_after_crash(crash_after("barrier", setup, op)), zero_extended(old, 2 * B));
  // Step 2 wrote the new blocks; the old final block still says "final" in the middle (it is loose).
  auto p2 = crash_after("new-blocks", setup, op);
  EXPECT_EQ(read_after_crash(p2), expect);
  redo_and_check(p2, op, expect);
  // An fsync (or the writer's close) tightens it once the new blocks are on disk.
  auto op_sync = [&](ContentFile& f) {
    op(f);
    EXPECT_EQ(f.loose_blocks(), 1u);
    f.sync(true);
  };
  auto p3 = crash_after("tighten", setup, op_sync);
  EXPECT_EQ(read_after_crash(p3), expect);
  // And the completed file detects a cut at its old end like any other.
  truncate_file(p3, cipher_->layout().slot_offset(2));
  EXPECT_EQ(error_kind_of([&] { read_all(*open_content(cipher_, p3)); }), ErrorKind::Auth);
}

TEST_P(ContentCrashStates, InterruptedAppendAfterAFullFinalBlockStaysReadable) {
  const auto old = random_bytes(2 * B, 3);
  const auto add = random_bytes(B + 5, 4);
  auto setup = [&](ContentFile& f) {
    f.write(0, old);
    f.sync(true);  // its header on disk: the append writes only the new blocks (else it rewrites from block 0)
  };
  auto op = [&](ContentFile& f) { f.write(2 * B, add); };
  auto expect = old;
  expect.insert(expect.end(), add.begin(), add.end());
  auto p = crash_after("new-blocks", setup, op);
  EXPECT_EQ(read_after_crash(p), expect);
  redo_and_check(p, op, expect);
  auto done = crash_after("tighten", setup, then_sync(op));
  EXPECT_EQ(read_after_crash(done), expect);
  truncate_file(done, cipher_->layout().slot_offset(2));
  EXPECT_EQ(error_kind_of([&] { read_all(*open_content(cipher_, done)); }), ErrorKind::Auth);
}

TEST_P(ContentCrashStates, InterruptedFirstWriteAtAnOffsetLeavesAnEmptyOrCompleteFile) {
  const auto add = random_bytes(100, 5);
  auto setup = [](ContentFile&) {};
  auto op = [&](ContentFile& f) { f.write(3 * B + 1, add); };
  auto expect = zero_extended({}, 3 * B + 1);
  expect.insert(expect.end(), add.begin(), add.end());
  // Only the header made it: the file reads as empty, as it was before the write (fsck still points it out).
  auto p = crash_after("header", setup, op);
  EXPECT_EQ(read_all(*open_content(cipher_, p)), std::vector<uint8_t>{});
  EXPECT_EQ(open_content(cipher_, p)->first_bad_block(), std::optional<uint64_t>(0));
  redo_and_check(p, op, expect);
  EXPECT_EQ(read_after_crash(crash_after("new-blocks", setup, op)), expect);
}

TEST_P(ContentCrashStates, InterruptedWriteIntoAHoleStaysReadable) {
  const auto tail = random_bytes(B, 6);
  const auto add = random_bytes(2 * B, 7);
  auto setup = [&](ContentFile& f) { f.write(10 * B, tail); };  // holes 0..9 claimed by block 10
  auto op = [&](ContentFile& f) { f.write(3 * B + 7, add); };   // blocks 3..5 become data
  auto expect = zero_extended({}, 11 * B);
  std::copy(tail.begin(), tail.end(), expect.begin() + 10 * B);
  std::copy(add.begin(), add.end(), expect.begin() + 3 * B + 7);
  // Block 10 still claims ten holes, three of which are now data: the file must read regardless.
  auto p = crash_after("new-blocks", setup, op);
  EXPECT_EQ(read_after_crash(p), expect);
  redo_and_check(p, op, expect);
  auto done = crash_after("tighten", setup, then_sync(op));
  EXPECT_EQ(read_after_crash(done), expect);
  // Tightened, block 10 claims only the four holes before it: zeroing block 5 (data now) is detected.
  auto bytes = file_bytes(done);
  std::fill(bytes.begin() + static_cast<std::ptrdiff_t>(cipher_->layout().slot_offset(5)),
            bytes.begin() + static_cast<std::ptrdiff_t>(cipher_->layout().slot_offset(6)), 0);
  put_file_bytes(done, bytes);
  EXPECT_EQ(error_kind_of([&] { read_all(*open_content(cipher_, done)); }), ErrorKind::Auth);
}

TEST_P(ContentCrashStates, InterruptedBlockAlignedTruncateStaysReadable) {
  const auto old = random_bytes(4 * B + 5, 8);
  auto setup = [&](ContentFile& f) { f.write(0, old); };
  auto op = [&](ContentFile& f) { f.truncate(2 * B); };
  // The new final block was rewritten in place, "final", before the cut: the old contents still read.
  auto p = crash_after("new-final", setup, op);
  EXPECT_EQ(read_after_crash(p), old);
  redo_and_check(p, op, std::vector<uint8_t>(old.begin(), old.begin() + 2 * B));
  EXPECT_EQ(read_after_crash(crash_after("cut", setup, op)), std::vector<uint8_t>(old.begin(), old.begin() + 2 * B));
}

TEST_P(ContentCrashStates, InterruptedTruncateIntoAHoleStaysReadable) {
  const auto tail = random_bytes(B, 9);
  auto setup = [&](ContentFile& f) { f.write(8 * B, tail); };
  auto op = [&](ContentFile& f) { f.truncate(4 * B); };  // the new final block (3) is a hole now
  auto p = crash_after("new-final", setup, op);
  auto expect = zero_extended({}, 9 * B);
  std::copy(tail.begin(), tail.end(), expect.begin() + 8 * B);
  EXPECT_EQ(read_after_crash(p), expect);
  redo_and_check(p, op, zero_extended({}, 4 * B));
}

TEST_P(ContentCrashStates, InterruptedTruncateGrowStaysReadable) {
  const auto old = random_bytes(B / 2, 10);
  auto setup = [&](ContentFile& f) { f.write(0, old); };
  auto op = [&](ContentFile& f) { f.truncate(6 * B + 3); };
  EXPECT_EQ(read_after_crash(crash_after("pad-old-final", setup, op)), zero_extended(old, B));
  auto p = crash_after("new-blocks", setup, op);
  EXPECT_EQ(read_after_crash(p), zero_extended(old, 6 * B + 3));
  redo_and_check(p, op, zero_extended(old, 6 * B + 3));
}

TEST_P(ContentCrashStates, InterruptedUnalignedShrinkStaysReadable) {
  // Shrinking into the middle of a block: the file ends at the block before (made final), then the short final
  // block is appended. Each state is the old file, a prefix of it, or the new file.
  const auto old = random_bytes(4 * B + 5, 11);
  auto setup = [&](ContentFile& f) { f.write(0, old); };
  auto op = [&](ContentFile& f) { f.truncate(2 * B + 100); };
  auto prefix = [&](uint64_t n) { return std::vector<uint8_t>(old.begin(), old.begin() + n); };
  EXPECT_EQ(read_after_crash(crash_after("prev-final", setup, op)), old);
  auto p = crash_after("cut-before", setup, op);
  EXPECT_EQ(read_after_crash(p), prefix(2 * B));
  redo_and_check(
      p, [&](ContentFile& f) { f.truncate(2 * B + 100); }, zero_extended(prefix(2 * B), 2 * B + 100));
  EXPECT_EQ(read_after_crash(crash_after("new-final", setup, op)), prefix(2 * B + 100));
  auto done = crash_after("tighten", setup, then_sync(op));
  EXPECT_EQ(read_after_crash(done), prefix(2 * B + 100));
  // The finished file detects a cut at a block boundary again.
  truncate_file(done, cipher_->layout().slot_offset(2));
  EXPECT_EQ(error_kind_of([&] { read_all(*open_content(cipher_, done)); }), ErrorKind::Auth);
}

TEST_P(ContentCrashStates, InterruptedShrinkWithinTheFirstBlockStaysReadable) {
  const auto old = random_bytes(3 * B, 12);
  auto setup = [&](ContentFile& f) { f.write(0, old); };
  auto op = [&](ContentFile& f) { f.truncate(10); };
  auto p = crash_after("cut-before", setup, op);
  EXPECT_EQ(read_all(*open_content(cipher_, p)), std::vector<uint8_t>{});  // header only: reads as empty
  EXPECT_EQ(read_after_crash(crash_after("new-final", setup, op)), std::vector<uint8_t>(old.begin(), old.begin() + 10));
}

TEST_P(ContentCrashStates, InterruptedUnalignedShrinkIntoAHoleStaysReadable) {
  const auto tail = random_bytes(B, 13);
  auto setup = [&](ContentFile& f) { f.write(8 * B, tail); };  // holes 0..7, claimed by block 8
  auto op = [&](ContentFile& f) { f.truncate(4 * B + 100); };  // new final block 4 and the block before are holes
  auto old = zero_extended({}, 9 * B);
  std::copy(tail.begin(), tail.end(), old.begin() + 8 * B);
  EXPECT_EQ(read_after_crash(crash_after("prev-final", setup, op)), old);
  EXPECT_EQ(read_after_crash(crash_after("cut-before", setup, op)), zero_extended({}, 4 * B));
  EXPECT_EQ(read_after_crash(crash_after("new-final", setup, op)), zero_extended({}, 4 * B + 100));
  EXPECT_EQ(read_after_crash(crash_after("tighten", setup, then_sync(op))), zero_extended({}, 4 * B + 100));
}

// A punch (fallocate PUNCH_HOLE or ZERO_RANGE) rewrites the claim of the data block after the run first, then
// clears the run's slots, then rewrites the partly covered blocks. Each state reads without an error, every
// block holding its old contents or zeros; the size never changes.
TEST_P(ContentCrashStates, InterruptedPunchStaysReadable) {
  const auto old = random_bytes(10 * B + 50, 14);
  auto setup = [&](ContentFile& f) { f.write(0, old); };
  const uint64_t off = 2 * B + 10, end = 6 * B + 20;  // head 2, run 3..5, tail 6 (the claimer)
  for (auto space : {ContentFile::Space::Release, ContentFile::Space::Keep}) {
    SCOPED_TRACE(space == ContentFile::Space::Keep ? "keep" : "release");
    auto op = [&](ContentFile& f) { f.zero_range(off, end - off, space); };
    auto zeroed = [&](uint64_t lo, uint64_t hi) {
      auto v = old;
      std::fill(v.begin() + static_cast<std::ptrdiff_t>(lo), v.begin() + static_cast<std::ptrdiff_t>(hi), 0);
      return v;
    };
    // The claimer's own zeros are in with its new claim; the run still holds data, which the claim covers.
    auto p1 = crash_after("punch-claim", setup, op);
    EXPECT_EQ(read_after_crash(p1), zeroed(6 * B, end));
    redo_and_check(p1, op, zeroed(off, end));
    auto p2 = crash_after("punch-slots", setup, op);
    EXPECT_EQ(read_after_crash(p2), zeroed(3 * B, end));
    redo_and_check(p2, op, zeroed(off, end));
    EXPECT_EQ(read_after_crash(crash_after("punch-head", setup, op)), zeroed(off, end));
  }
}

TEST_P(ContentCrashStates, InterruptedPunchToTheEndKeepsAFinalDataBlock) {
  const auto old = random_bytes(6 * B + 7, 15);
  auto setup = [&](ContentFile& f) { f.write(0, old); };
  auto op = [&](ContentFile& f) { f.zero_range(2 * B, 10 * B, ContentFile::Space::Release); };
  auto done = old;
  std::fill(done.begin() + static_cast<std::ptrdiff_t>(2 * B), done.end(), 0);
  // Block 6, the last, is the claimer: rewritten as zeros, final, claiming 2..5, before they are cleared.
  auto tail_zeroed = old;
  std::fill(tail_zeroed.begin() + static_cast<std::ptrdiff_t>(6 * B), tail_zeroed.end(), 0);
  EXPECT_EQ(read_after_crash(crash_after("punch-claim", setup, op)), tail_zeroed);
  auto p = crash_after("punch-slots", setup, op);
  EXPECT_EQ(read_after_crash(p), done);
  // Nothing is left to do: the file still detects a cut before its last block.
  truncate_file(p, cipher_->layout().slot_offset(6));
  EXPECT_EQ(error_kind_of([&] { read_all(*open_content(cipher_, p)); }), ErrorKind::Auth);
}

TEST_P(ContentCrashStates, InterruptedPunchEndingInAHoleRewritesTheClaimerAfterIt) {
  const auto head = random_bytes(4 * B, 16), tail = random_bytes(B, 17);
  auto setup = [&](ContentFile& f) {
    f.write(0, head);
    f.write(9 * B, tail);  // holes 4..8, claimed by block 9
  };
  auto op = [&](ContentFile& f) { f.zero_range(B, 5 * B + 30, ContentFile::Space::Release); };  // to inside 6
  auto old = zero_extended(head, 10 * B);
  std::copy(tail.begin(), tail.end(), old.begin() + static_cast<std::ptrdiff_t>(9 * B));
  auto done = old;
  std::fill(done.begin() + static_cast<std::ptrdiff_t>(B), done.begin() + static_cast<std::ptrdiff_t>(4 * B), 0);
  EXPECT_EQ(read_after_crash(crash_after("punch-claim", setup, op)), old);  // block 9 now claims 1..8
  auto p = crash_after("punch-slots", setup, op);
  EXPECT_EQ(read_after_crash(p), done);
  // Block 9 claims exactly the eight zero slots before it: zeroing block 0 is detected.
  auto bytes = file_bytes(p);
  std::fill(bytes.begin() + static_cast<std::ptrdiff_t>(cipher_->layout().slot_offset(0)),
            bytes.begin() + static_cast<std::ptrdiff_t>(cipher_->layout().slot_offset(1)), 0);
  put_file_bytes(p, bytes);
  EXPECT_EQ(error_kind_of([&] { read_all(*open_content(cipher_, p)); }), ErrorKind::Auth);
}

TEST_P(ContentCrashStates, InterruptedPunchOfPartsOfTwoBlocksStaysReadable) {
  const auto old = random_bytes(3 * B, 18);
  auto setup = [&](ContentFile& f) { f.write(0, old); };
  auto op = [&](ContentFile& f) { f.zero_range(B + 10, B, ContentFile::Space::Keep); };  // no whole block
  auto tail_done = old;
  std::fill(tail_done.begin() + static_cast<std::ptrdiff_t>(2 * B),
            tail_done.begin() + static_cast<std::ptrdiff_t>(2 * B + 10), 0);
  EXPECT_EQ(read_after_crash(crash_after("punch-tail", setup, op)), tail_done);
  auto done = old;
  std::fill(done.begin() + static_cast<std::ptrdiff_t>(B + 10), done.begin() + static_cast<std::ptrdiff_t>(2 * B + 10),
            0);
  EXPECT_EQ(read_after_crash(crash_after("punch-head", setup, op)), done);
}

// Random writes, truncates and punches, each stopped after a random one of its on-disk steps (or not at all). Whatever
// survives must read back without an error, no longer than the larger of the before and after sizes and no
// shorter than the smaller one rounded down to a block, every byte either its old value, its new value or zero.
// The survivor then becomes the reference for the next step.
TEST_P(ContentCrashStates, RandomInterruptedOperationsAlwaysLeaveAReadableFile) {
  for (uint32_t seed : {1u, 2u}) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937_64 rng(seed * 7919 + static_cast<uint32_t>(GetParam()));
    auto pick = [&](uint64_t lo, uint64_t hi) { return std::uniform_int_distribution<uint64_t>(lo, hi)(rng); };
    const std::string p = dir_.file("random-" + std::to_string(seed));
    std::vector<uint8_t> ref;
    int crashes = 0;
    for (int step = 0; step < 400; ++step) {
      auto f = open_content(cipher_, p);
      std::vector<uint8_t> after = ref;
      std::function<void(ContentFile&)> op;
      std::string what;
      const uint64_t kind = pick(0, 5);
      if (kind >= 4) {
        // A hole punch or zeroed range (fallocate): the size stays, the range reads as zeros.
        const bool keep = kind == 5;
        uint64_t off = pick(0, 2) == 0 ? pick(0, 6) * B : pick(0, ref.size() + B);
        uint64_t len = pick(0, 3) == 0 ? ref.size() + B : pick(1, 8 * B);
        if (off < after.size())
          std::fill(after.begin() + static_cast<std::ptrdiff_t>(off),
                    after.begin() + static_cast<std::ptrdiff_t>(std::min<uint64_t>(after.size(), off + len)), 0);
        op = [off, len, keep](ContentFile& g) {
          g.zero_range(off, len, keep ? ContentFile::Space::Keep : ContentFile::Space::Release);
        };
        what = std::string(keep ? "zero-range " : "punch-hole ") + std::to_string(off) + "+" + std::to_string(len);
      } else if (kind >= 2) {
        uint64_t off = pick(0, 3) == 0 ? ref.size() + pick(0, 12 * B) : pick(0, ref.size() + B);
        uint64_t len = pick(0, 1) ? pick(1, 300) : pick(1, 3 * B);
        auto d = random_bytes(len, static_cast<uint32_t>(rng()));
        if (after.size() < off + len) after.resize(off + len, 0);
        std::copy(d.begin(), d.end(), after.begin() + static_cast<std::ptrdiff_t>(off));
        const bool sync = pick(0, 2) == 0;  // an fsync after it: the loose blocks are tightened
        op = [off, d, sync](ContentFile& g) {
          g.write(off, d);
          if (sync) g.sync(true);
        };
        what = "write " + std::to_string(off) + "+" + std::to_string(len) + (sync ? " fsync" : "");
      } else {
        uint64_t n = pick(0, 2) == 0 ? ref.size() + pick(1, 10 * B) : pick(0, ref.size());
        after.resize(n, 0);
        op = [n](ContentFile& g) { g.truncate(n); };
        what = "truncate " + std::to_string(ref.size()) + " -> " + std::to_string(n);
      }
      SCOPED_TRACE("step " + std::to_string(step) + ": " + what);
      const int crash_at = static_cast<int>(pick(0, 4));  // 0: no crash; else after that many steps
      int steps_done = 0;
      f->set_step_hook_for_testing([&](std::string_view) {
        if (++steps_done == crash_at) throw Crash{};
      });
      try {
        op(*f);
      } catch (const Crash&) {
        ++crashes;
      }
      f.reset();
      auto g = open_content(cipher_, p);
      std::vector<uint8_t> got;
      ASSERT_NO_THROW(got = read_all(*g));
      const uint64_t lo = std::min(ref.size(), after.size()) / B * B, hi = std::max(ref.size(), after.size());
      ASSERT_GE(got.size(), lo);
      ASSERT_LE(got.size(), hi);
      for (size_t i = 0; i < got.size(); ++i) {
        bool ok = got[i] == 0 || (i < ref.size() && got[i] == ref[i]) || (i < after.size() && got[i] == after[i]);
        ASSERT_TRUE(ok) << "byte " << i << " is neither old, new nor zero";
      }
      if (file_size(g->fd()) != format::kFileHeaderSize) {
        ASSERT_EQ(g->first_bad_block(), std::nullopt);
      }
      if (crash_at == 0) {
        ASSERT_EQ(got, after);
      }
      ref = std::move(got);
    }
    EXPECT_GT(crashes, 50);
  }
}

INSTANTIATE_TEST_SUITE_P(Ciphers, ContentCrashStates,
                         ::testing::Values(CipherId::Aes256Gcm, CipherId::XChaCha20Poly1305),
                         [](const auto& info) { return cipher_label(info.param); });

}  // namespace
}  // namespace veil::testing
