#include "veilfs/util/parallel.hpp"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <exception>
#include <future>
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

}  // namespace

void parallel_for(size_t n, size_t min_parallel, const std::function<void(size_t, size_t)>& fn) {
  // Small requests never touch the pool, so no thread exists until the first large one (the daemon forks
  // after mounting, and a fork must not happen with threads running).
  if (n < min_parallel || n < 2 || std::thread::hardware_concurrency() < 2) {
    fn(0, n);
    return;
  }
  size_t workers = pool().size();
  size_t chunks = std::min(n, workers + 1);
  size_t per = (n + chunks - 1) / chunks;
  std::vector<std::future<void>> futures;
  for (size_t c = 1; c < chunks; ++c) {
    size_t b = c * per, e = std::min(n, b + per);
    if (b >= e) break;
    auto task = std::make_shared<std::packaged_task<void()>>([&fn, b, e] { fn(b, e); });
    futures.push_back(task->get_future());
    pool().submit([task] { (*task)(); });
  }
  std::exception_ptr first;
  try {
    fn(0, std::min(n, per));
  } catch (...) {
    first = std::current_exception();
  }
  for (auto& f : futures) {
    try {
      f.get();
    } catch (...) {
      if (!first) first = std::current_exception();
    }
  }
  if (first) std::rethrow_exception(first);
}

}  // namespace veil
