// Persistent workers that spin for a short while after each region (the next
// kernel of a forward pass usually follows within microseconds) and then sleep on
// a condition variable, so an idle server costs no CPU.
#include "threadpool.h"

#include <algorithm>
#include <chrono>

#if defined(__linux__)
#include <pthread.h>
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
static inline void cpu_relax() { _mm_pause(); }
#elif defined(__aarch64__)
static inline void cpu_relax() { asm volatile("yield" ::: "memory"); }
#else
static inline void cpu_relax() {}
#endif

namespace hc {

// How long an idle worker keeps spinning before it sleeps. Long enough to bridge
// the gap between two decode steps of a small model (JS sampling + N-API round
// trip), short enough not to steal a core from the event loop for long.
static constexpr auto kSpin = std::chrono::microseconds(300);

ThreadPool::ThreadPool(int threads) : nthreads_(std::max(1, threads)) {
  workers_.reserve(nthreads_ - 1);
  for (int r = 1; r < nthreads_; r++) {
    workers_.emplace_back(&ThreadPool::worker, this, r);
#if defined(__linux__)
    // named by the creator, so the name is there as soon as the pool is (top -H, /proc/PID/task/*/comm)
    pthread_setname_np(workers_.back().native_handle(), "hc-pool");
#endif
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_.store(true, std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::run(const std::function<void(int, int)>& fn) {
  if (nthreads_ == 1) {
    fn(0, 1);
    return;
  }
  job_ = &fn;
  pending_.store(nthreads_ - 1, std::memory_order_relaxed);
  {
    // under the mutex so a worker that is about to sleep cannot miss the bump
    std::lock_guard<std::mutex> lk(mu_);
    generation_.fetch_add(1, std::memory_order_release);
  }
  cv_.notify_all();
  fn(0, nthreads_);
  // Spin while the others finish; if they take long (a busy machine descheduled one)
  // give the core away instead of burning the time slice it needs.
  for (int spins = 0; pending_.load(std::memory_order_acquire) != 0; spins++) {
    if (spins < 4096) cpu_relax();
    else std::this_thread::yield();
  }
  job_ = nullptr;
}

void ThreadPool::parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  const int64_t chunks = std::min<int64_t>(nthreads_, std::max<int64_t>(1, n / grain));
  if (chunks <= 1) {
    fn(0, n);  // too small to be worth waking anyone
    return;
  }
  run([&](int rank, int) {
    if (rank >= chunks) return;
    const int64_t b = n * rank / chunks, e = n * (rank + 1) / chunks;
    if (b < e) fn(b, e);
  });
}

void ThreadPool::run_chunks(int64_t n, int64_t align, int64_t min_chunk,
                            const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  align = std::max<int64_t>(1, align);
  min_chunk = std::max(align, (min_chunk + align - 1) / align * align);
  if (nthreads_ == 1 || n <= min_chunk) {
    fn(0, n);
    return;
  }
  // its own cache line: the ranks' loads of the counter must not share one with other stack data
  struct alignas(64) Counter {
    std::atomic<int64_t> next{0};
  } c;
  const int64_t parts = 2 * int64_t(nthreads_);
  run([&](int, int) {
    int64_t b = c.next.load(std::memory_order_relaxed);
    for (;;) {
      if (b >= n) return;
      const int64_t want = std::max(min_chunk, ((n - b) / parts + align - 1) / align * align);
      const int64_t e = std::min(n, b + want);
      if (!c.next.compare_exchange_weak(b, e, std::memory_order_relaxed)) continue;  // b reloaded
      fn(b, e);
      b = c.next.load(std::memory_order_relaxed);
    }
  });
}

void ThreadPool::worker(int rank) {
  // Not generation_.load(): run() may already have bumped it before this thread
  // got scheduled, and that region must not be missed. No region ran before construction.
  uint64_t seen = 0;
  for (;;) {
    uint64_t g = generation_.load(std::memory_order_acquire);
    if (g == seen) {
      auto start = std::chrono::steady_clock::now();
      int spins = 0;
      while ((g = generation_.load(std::memory_order_acquire)) == seen) {
        cpu_relax();
        if (++spins == 256) {
          spins = 0;
          const auto idle = std::chrono::steady_clock::now() - start;
          if (idle > kSpin / 4) std::this_thread::yield();  // let a waiting thread run on this core
          if (idle > kSpin) {
            std::unique_lock<std::mutex> lk(mu_);
            cv_.wait(lk, [&] { return generation_.load(std::memory_order_acquire) != seen; });
          }
        }
      }
    }
    seen = g;
    if (stop_.load(std::memory_order_relaxed)) return;
    (*job_)(rank, nthreads_);
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

}  // namespace hc
