// EngineCache on its own (no Fs, no /dev/fuse): one engine per slot, the cap and its LRU order, and the rule that
// an engine still used by a request is never dropped, so that no second engine of the same file can appear.
#include "fuse/engine_cache.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "fuse_test_util.hpp"

namespace veil::fuse::testing {
namespace {

class EngineCacheTest : public ::testing::Test {
 protected:
  // A fresh engine over a new file of the scratch directory; counts how often the cache asked for one.
  EngineCache::Made make(bool writable = true) {
    ++made_;
    std::string path = dir_.file("f" + std::to_string(made_.load()));
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (!fd) throw std::runtime_error("open failed");
    return {std::make_shared<ContentFile>(cipher_, std::move(fd), path), writable};
  }
  std::function<EngineCache::Made()> maker(bool writable = true) {
    return [this, writable] { return make(writable); };
  }
  static std::vector<std::shared_ptr<EngineSlot>> slots(size_t n) {
    std::vector<std::shared_ptr<EngineSlot>> v;
    for (size_t i = 0; i < n; ++i) v.push_back(std::make_shared<EngineSlot>());
    return v;
  }

  TempDir dir_;
  std::shared_ptr<const ContentCipher> cipher_ =
      std::make_shared<ContentCipher>(CipherId::XChaCha20Poly1305, 4096, SecretBytes::random(32));
  std::atomic<int> made_{0};
};

TEST_F(EngineCacheTest, AnEngineIsMadeOnceAndReused) {
  EngineCache cache(4);
  auto s = std::make_shared<EngineSlot>();
  EXPECT_EQ(cache.cached(*s), nullptr);
  auto e1 = cache.get(s, false, maker());
  auto e2 = cache.get(s, true, maker());
  EXPECT_EQ(e1, e2);
  EXPECT_EQ(made_, 1);
  EXPECT_EQ(cache.cached(*s), e1);
}

TEST_F(EngineCacheTest, AReadOnlyEngineIsReplacedWhenAWriterComes) {
  EngineCache cache(4);
  auto s = std::make_shared<EngineSlot>();
  auto ro = cache.get(s, false, maker(/*writable=*/false));
  EXPECT_EQ(cache.get(s, false, maker()), ro);  // reading needs nothing more
  auto rw = cache.get(s, true, maker());
  EXPECT_NE(rw, ro);
  EXPECT_EQ(cache.get(s, true, maker()), rw);
  EXPECT_EQ(made_, 2);
}

TEST_F(EngineCacheTest, TheCapHoldsAndTheLeastRecentlyUsedGoesFirst) {
  EngineCache cache(2);
  auto s = slots(3);
  cache.get(s[0], true, maker());
  cache.get(s[1], true, maker());
  cache.get(s[0], true, maker());  // s[1] is now the least recently used
  cache.get(s[2], true, maker());
  EXPECT_EQ(cache.listed(), 2u);
  EXPECT_NE(cache.cached(*s[0]), nullptr);
  EXPECT_EQ(cache.cached(*s[1]), nullptr);
  EXPECT_NE(cache.cached(*s[2]), nullptr);
  auto many = slots(50);
  for (auto& x : many) {
    cache.get(x, true, maker());
    EXPECT_LE(cache.listed(), 2u);
  }
  size_t alive = 0;
  for (auto& x : many) alive += cache.cached(*x) ? 1 : 0;
  EXPECT_EQ(alive, 2u);
}

TEST_F(EngineCacheTest, AnEngineInUseIsNeverDroppedSoNoSecondOneAppears) {
  EngineCache cache(1);
  auto s = slots(4);
  auto busy = cache.get(s[0], true, maker());  // a request still writing through it
  for (size_t i = 1; i < s.size(); ++i) cache.get(s[i], true, maker());
  EXPECT_EQ(cache.cached(*s[0]), busy);
  const int before = made_;
  EXPECT_EQ(cache.get(s[0], true, maker()), busy);  // its next use finds the same engine
  EXPECT_EQ(made_, before);
  EXPECT_LE(cache.listed(), 1u);
}

TEST_F(EngineCacheTest, DropClosesTheEngineOnceItsLastUserIsDone) {
  EngineCache cache(4);
  auto s = std::make_shared<EngineSlot>();
  auto e = cache.get(s, true, maker());
  std::weak_ptr<ContentFile> w = e;
  cache.drop(*s);
  EXPECT_EQ(cache.cached(*s), nullptr);
  EXPECT_EQ(cache.listed(), 0u);
  EXPECT_FALSE(w.expired());  // the request holding it finishes first
  e.reset();
  EXPECT_TRUE(w.expired());
}

TEST_F(EngineCacheTest, SlotsWhoseOwnerIsGoneAreSkipped) {
  EngineCache cache(2);
  {
    auto gone = slots(2);
    for (auto& x : gone) cache.get(x, true, maker());
  }
  auto s = slots(2);
  for (auto& x : s) cache.get(x, true, maker());
  EXPECT_EQ(cache.listed(), 2u);
  for (auto& x : s) EXPECT_NE(cache.cached(*x), nullptr);
}

TEST_F(EngineCacheTest, AHeldEngineIsNeverReplacedUnderConcurrentChurn) {
  EngineCache cache(2);
  auto s = std::make_shared<EngineSlot>();
  auto others = slots(8);
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        auto e = cache.get(s, true, maker());
        cache.get(others[t], true, maker());        // churn: evictions run concurrently
        EXPECT_EQ(cache.get(s, true, maker()), e);  // held by us: never replaced
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_LE(cache.listed(), 2u);
}

}  // namespace
}  // namespace veil::fuse::testing
