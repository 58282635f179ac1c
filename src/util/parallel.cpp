#include "veilfs/util/parallel.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace veil {
namespace {

class Pool {
 public:
  explicit Pool(size_t n) {
    for (size_t i = 0; i < n; ++i) threads_.emplace_back([this] { run(); });
  }
  ~Pool() {
    {
      std::lock_guard lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  size_t size() const { return threads_.size(); }
  void submit(std::function<void()> job) {
    {
      std::lock_guard lk(mu_);
      jobs_.push_back(std::move(job));
    }
    cv_.notify_one();
  }

 private:
  void run() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock lk(mu_);
        cv_.wait(lk, [this] { return stop_ || !jobs_.empty(); });
        if (jobs_.empty()) return;
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      job();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  std::vector<std::thread> threads_;
  bool stop_ = false;
};

Pool& pool() {
  static Pool p(std::max(1u, std::thread::hardware_concurrency()) - 1);
  return p;
}

// One parallel_for call. Workers and the caller take chunks from a shared counter, so a worker that wakes late
// (a thread wake-up costs tens of microseconds in a VM) takes fewer chunks instead of holding everyone up. The
// state is shared with the pool's jobs because a job may start after the call has returned; it then finds no
// chunk left and never touches fn.
struct Run {
  Run(size_t n, size_t grain, const std::function<void(size_t, size_t)>& fn) : n(n), grain(grain), fn(&fn) {}
  const size_t n, grain;
  const std::function<void(size_t, size_t)>* fn;
  std::atomic<size_t> next{0};
  std::atomic<size_t> done{0};  // items finished (or skipped after a failure)
  std::atomic<bool> failed{false};
  std::mutex err_mu;
  std::exception_ptr err;

  void work() {
    for (;;) {
      size_t b = next.fetch_add(grain, std::memory_order_relaxed);
      if (b >= n) return;
      size_t e = std::min(n, b + grain);
      if (!failed.load(std::memory_order_relaxed)) {
        try {
          (*fn)(b, e);
        } catch (...) {
          std::lock_guard lk(err_mu);
          if (!err) err = std::current_exception();
          failed = true;
        }
      }
      if (done.fetch_add(e - b, std::memory_order_acq_rel) + (e - b) == n) done.notify_all();
    }
  }
  void wait() {
    // The last chunk usually finishes within microseconds of ours: spin briefly before sleeping.
    for (int i = 0; i < 500; ++i) {
      if (done.load(std::memory_order_acquire) == n) return;
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    }
    for (size_t d = done.load(std::memory_order_acquire); d != n; d = done.load(std::memory_order_acquire))
      done.wait(d, std::memory_order_acquire);
  }
};

}  // namespace

void parallel_for(size_t n, size_t min_parallel, const std::function<void(size_t, size_t)>& fn) {
  // Small requests never touch the pool, so no thread exists until the first large one (the daemon forks
  // after mounting, and a fork must not happen with threads running).
  if (n < min_parallel || n < 2 || std::thread::hardware_concurrency() < 2) {
    fn(0, n);
    return;
  }
  const size_t workers = pool().size();
  // About four chunks per thread, none smaller than half the parallel threshold.
  const size_t grain = std::max<size_t>(std::max<size_t>(1, min_parallel / 2), n / (4 * (workers + 1)));
  auto run = std::make_shared<Run>(n, grain, fn);
  const size_t jobs = std::min(workers, (n + grain - 1) / grain - 1);
  for (size_t i = 0; i < jobs; ++i) pool().submit([run] { run->work(); });
  run->work();
  run->wait();
  // Taken out of the shared state, so the exception is freed on this thread, not by a pool job's late ~Run.
  if (std::exception_ptr err = std::move(run->err)) std::rethrow_exception(err);
}

}  // namespace veil
