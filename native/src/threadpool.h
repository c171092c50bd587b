// A fixed set of compute threads that run one parallel region at a time.
// The caller's thread is rank 0 and takes part in the work, so `threads == 1`
// means no extra threads at all. Regions are short (one kernel), so the
// workers spin briefly before sleeping to keep per-kernel overhead in the
// microseconds.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace hc {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return nthreads_; }

  // Runs fn(rank, nranks) once on every rank (rank 0 on the calling thread) and
  // returns when all have finished. Not re-entrant.
  void run(const std::function<void(int rank, int nranks)>& fn);

  // Splits [0, n) into contiguous chunks of at least `grain` items, one chunk per rank.
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t begin, int64_t end)>& fn);

  // Hands [0, n) out in chunks taken from a shared counter (guided: each chunk a
  // 1/(2·ranks) share of what is left, at least `min_chunk`, cut at multiples of
  // `align`), so a rank that starts late or runs slow (woken late, descheduled on a
  // busy machine, slower to memory) takes fewer chunks instead of making the others
  // wait at the end. Every index is covered exactly once; which rank runs which
  // chunk varies between calls, so fn must not depend on it for its results.
  void run_chunks(int64_t n, int64_t align, int64_t min_chunk, const std::function<void(int64_t begin, int64_t end)>& fn);

 private:
  void worker(int rank);
  int nthreads_;
  std::vector<std::thread> workers_;
  const std::function<void(int, int)>* job_ = nullptr;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
};

}  // namespace hc
