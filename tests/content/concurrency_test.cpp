// Several threads writing and reading different blocks of one ContentFile at once (run under ASan in CI).
#include <atomic>
#include <thread>

#include "content_test_util.hpp"

namespace veil::testing {
namespace {

class ContentConcurrency : public ::testing::TestWithParam<CipherId> {};

TEST_P(ContentConcurrency, ThreadsOnDifferentBlocksSeeOnlyTheirOwnWrites) {
  ScratchDir dir;
  auto cipher = make_cipher(GetParam());
  const uint64_t B = cipher->layout().block_size();
  constexpr int kThreads = 4, kBlocksPerThread = 16, kRounds = 15;  // 65 blocks: whole-file reads use the worker pool
  auto f = open_content(cipher, dir.file("f"));
  // Each thread owns blocks t, t + kThreads, ... (interleaved, so neighbours belong to other threads). The last
  // block belongs to nobody, so no thread's write changes the file size.
  const uint64_t nblocks = kThreads * kBlocksPerThread + 1;
  f->truncate(nblocks * B);

  std::atomic<int> failures{0};
  std::vector<std::vector<uint8_t>> final_block(nblocks);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      try {
        for (int r = 0; r < kRounds; ++r) {
          for (int k = 0; k < kBlocksPerThread; ++k) {
            const uint64_t blk = static_cast<uint64_t>(k) * kThreads + t;
            // Mix whole-block writes, partial writes and writes that end mid-block.
            auto data = random_bytes(B, static_cast<uint32_t>(t * 100000 + r * 100 + k));
            uint64_t lo = (r % 3 == 1) ? 17 : 0, hi = (r % 3 == 2) ? B - 33 : B;
            f->write(blk * B + lo, std::span(data).subspan(lo, hi - lo));
            auto& mine = final_block[blk];
            if (mine.empty()) mine.assign(B, 0);
            std::copy(data.begin() + lo, data.begin() + hi, mine.begin() + lo);
            std::vector<uint8_t> back(B);
            if (f->read(blk * B, back) != B || back != mine) failures++;
          }
        }
      } catch (const std::exception& e) {
        ADD_FAILURE() << "thread " << t << ": " << e.what();
        failures++;
      }
    });
  }
  // A reader of the whole file runs at the same time: it must never fail authentication.
  std::atomic<bool> stop{false};
  std::thread reader([&] {
    try {
      while (!stop.load()) {
        auto all = read_all(*f);
        if (all.size() != nblocks * B) failures++;
      }
    } catch (const std::exception& e) {
      ADD_FAILURE() << "reader: " << e.what();
      failures++;
    }
  });
  for (auto& th : threads) th.join();
  stop = true;
  reader.join();
  EXPECT_EQ(failures.load(), 0);

  auto all = read_all(*open_content(cipher, dir.file("f")));
  ASSERT_EQ(all.size(), nblocks * B);
  for (uint64_t blk = 0; blk < nblocks; ++blk) {
    auto expect = final_block[blk].empty() ? std::vector<uint8_t>(B, 0) : final_block[blk];
    EXPECT_TRUE(std::equal(expect.begin(), expect.end(), all.begin() + blk * B)) << "block " << blk;
  }
}

INSTANTIATE_TEST_SUITE_P(Ciphers, ContentConcurrency,
                         ::testing::Values(CipherId::Aes256Gcm, CipherId::XChaCha20Poly1305),
                         [](const auto& info) { return cipher_label(info.param); });

}  // namespace
}  // namespace veil::testing
